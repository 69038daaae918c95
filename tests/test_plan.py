"""The 4k+1 rule, the resampling rule and the window modes, on exact timelines."""
import numpy as np
import pytest

from wandata.bucket import fit
from wandata.config import Settings, SettingsError, load_settings
from wandata.plan import plan_windows, source_frames


@pytest.mark.parametrize("n", [81, 49, 33, 17, 5, 1])
def test_frames_of_form_4k_plus_1_are_accepted(n):
    assert Settings(frames=n).frames == n


@pytest.mark.parametrize("n,hint", [(80, "77 or 81"), (50, "49 or 53"), (0, "1 or 5")])
def test_other_frame_counts_are_rejected_with_the_nearest_valid_ones(n, hint):
    with pytest.raises(SettingsError, match=f"4k\\+1.*{hint}"):
        Settings(frames=n)


def test_buckets_must_be_multiples_of_16_or_32():
    with pytest.raises(SettingsError, match="multiples of 16"):
        Settings(buckets=((830, 480),))
    with pytest.raises(SettingsError, match="multiples of 32"):
        Settings(buckets=((848, 480),), size_multiple=32)
    assert Settings(buckets=((1280, 704), (704, 1280)), size_multiple=32)


def test_toml_config_overrides_defaults_and_flags_override_toml(tmp_path):
    cfg = tmp_path / "w.toml"
    cfg.write_text('[ingest]\nframes = 49\nbuckets = ["624x624", "832x480"]\nmode = "head"\n')
    s = load_settings(cfg, mode="uniform")
    assert s.frames == 49 and s.buckets == ((624, 624), (832, 480)) and s.mode == "uniform"
    cfg.write_text("[ingest]\nframez = 49\n")
    with pytest.raises(SettingsError, match="unknown setting.*framez"):
        load_settings(cfg)


def test_resampling_24_to_16_is_sample_and_hold():
    times = np.arange(100) / 24
    assert source_frames(times, 0.0, 8, 16).tolist() == [0, 1, 3, 4, 6, 7, 9, 10]


def test_resampling_ntsc_to_16():
    times = np.arange(100) * 1001 / 30000
    assert source_frames(times, 0.0, 10, 16).tolist() == [0, 1, 3, 5, 7, 9, 11, 13, 15, 16]


def test_resampling_repeats_frames_of_a_slower_source():
    times = np.arange(50) / 10
    assert source_frames(times, 0.0, 6, 16).tolist() == [0, 0, 1, 1, 2, 3]


def test_resampling_follows_timestamps_on_variable_frame_rate():
    # 1 s at 10 fps then 1 s at 40 fps: output frames in the second half come 2.5x as dense.
    times = np.concatenate([np.arange(10) / 10, 1 + np.arange(40) / 40])
    idx = source_frames(times, 0.0, 32, 16)
    assert all(times[i] <= t + 1e-9 for i, t in zip(idx, np.arange(32) / 16))
    assert all(t - times[i] < (0.1 if t < 1 else 0.025) for i, t in zip(idx, np.arange(32) / 16))


def test_window_modes():
    times = np.arange(24 * 20) / 24          # one 20 s shot
    shot = [(0, len(times) - 1)]
    head, _ = plan_windows(times, shot, 81, 16, "head")
    chunk, _ = plan_windows(times, shot, 81, 16, "chunk")
    uni, _ = plan_windows(times, shot, 81, 16, "uniform", 3)
    assert len(head) == 1 and head[0].start_s == 0
    assert len(chunk) == 3                  # 20 s // 5.0625 s
    starts = [w.start_s for w in chunk]
    assert np.allclose(np.diff(starts), 81 / 16)
    assert len(uni) == 3 and uni[0].start_s == 0
    assert uni[-1].src_frames[-1] == len(times) - 1 or uni[-1].end_s > 19.5
    for ws in (head, chunk, uni):
        for w in ws:
            assert len(w.src_frames) == 81
            assert w.src_frames.min() >= 0 and w.src_frames.max() < len(times)
    # windows never overlap
    for a, b in zip(uni, uni[1:]):
        assert a.src_frames[-1] < b.src_frames[0]


def test_short_shots_are_dropped_with_an_actionable_reason():
    times = np.arange(24 * 4) / 24          # 4 s
    wins, dropped = plan_windows(times, [(0, len(times) - 1)], 81, 16)
    assert wins == [] and len(dropped) == 1
    assert "4.00 s" in dropped[0].reason and "5.06 s" in dropped[0].reason
    assert "--frames" in dropped[0].reason
    wins, _ = plan_windows(times, [(0, len(times) - 1)], 49, 16)
    assert len(wins) == 1


@pytest.mark.parametrize("w,h,bucket", [
    (1280, 720, (832, 480)), (1920, 1080, (832, 480)), (720, 1280, (480, 832)),
    (1080, 1920, (480, 832)), (1440, 1080, (832, 480)), (1080, 1440, (480, 832)),
])
def test_bucket_by_orientation_cover_and_centre_crop(w, h, bucket):
    f = fit(w, h, ((832, 480), (480, 832)))
    assert (f.width, f.height) == bucket
    assert f.scaled_w >= f.width and f.scaled_h >= f.height
    assert f.crop_x == (f.scaled_w - f.width) // 2 and f.crop_y == (f.scaled_h - f.height) // 2
    # cover: one side fits exactly (up to even rounding), nothing is stretched
    assert abs(f.scaled_w / f.scaled_h - w / h) < 0.01


def test_square_bucket_is_chosen_for_square_sources_when_offered():
    f = fit(1080, 1080, ((832, 480), (480, 832), (624, 624)))
    assert (f.width, f.height) == (624, 624)
