"""The 4k+1 rule, the resampling rule and the window modes, on exact timelines."""
import numpy as np
import pytest

from wandata.media.bucket import fit
from wandata.settings import Settings, SettingsError, load_settings
from wandata.ingest.windows import shortfall_reason, window_starts
from wandata.media.decode import grid_start, source_frames


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
    a, b = 10, 10 + 16 * 20 - 1              # one 20 s shot, in grid frames
    head = window_starts(a, b, 81, "head")
    chunk = window_starts(a, b, 81, "chunk")
    uni = window_starts(a, b, 81, "uniform", 3)
    assert head == [10]
    assert chunk == [10, 91, 172]            # 320 // 81 = 3, back to back
    assert uni[0] == 10 and uni[-1] == b - 81 + 1 and len(uni) == 3
    for ws in (head, chunk, uni):
        assert all(a <= s and s + 81 - 1 <= b for s in ws)
        assert all(y - x >= 81 for x, y in zip(ws, ws[1:]))  # never overlapping
    assert window_starts(0, 100, 81, "uniform", 5) == [0]    # only one fits


def test_chunk_and_head_windows_of_a_shot_start_are_final():
    # Windows planned while a shot is still growing must be the first ones of the finished shot.
    for mode in ("head", "chunk"):
        final = window_starts(0, 999, 33, mode)
        for b in range(0, 1000, 37):
            partial = window_starts(0, b, 33, mode)
            assert partial == final[:len(partial)]


def test_short_shots_are_dropped_with_an_actionable_reason():
    assert window_starts(0, 63, 81, "chunk") == []   # 64 grid frames = 4 s
    reason = shortfall_reason(64, 81, 16)
    assert "4.00 s" in reason and "5.06 s" in reason and "--frames" in reason and "61" in reason
    assert window_starts(0, 63, 49, "chunk") == [0]


def test_grid_start_matches_the_resampling_rule():
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.01, 0.09, 300))
    times -= times[0]
    n = int(times[-1] * 16)
    picked = source_frames(times, 0.0, n, 16)
    for i, t in enumerate(times[:-1]):
        js = range(grid_start(t, 0.0, 16), grid_start(times[i + 1], 0.0, 16))
        assert all(picked[j] == i for j in js if j < n)


@pytest.mark.parametrize("w,h,bucket", [
    (1280, 720, (832, 480)), (1920, 1080, (832, 480)), (720, 1280, (480, 832)),
    (1080, 1920, (480, 832)), (1440, 1080, (832, 480)), (1080, 1440, (480, 832)),
])
def test_bucket_by_orientation_cover_and_centre_crop(w, h, bucket):
    f = fit(w, h, ((832, 480), (480, 832)))
    assert (f.width, f.height) == bucket
    assert f.scaled_w >= f.width and f.scaled_h >= f.height
    assert abs(f.crop_x - (f.scaled_w - f.width) / 2) <= 1 and abs(f.crop_y - (f.scaled_h - f.height) / 2) <= 1
    assert f.crop_x % 2 == 0 and f.crop_y % 2 == 0  # chroma-aligned
    # cover: one side fits exactly (up to even rounding), nothing is stretched
    assert abs(f.scaled_w / f.scaled_h - w / h) < 0.01


def test_square_bucket_is_chosen_for_square_sources_when_offered():
    f = fit(1080, 1080, ((832, 480), (480, 832), (624, 624)))
    assert (f.width, f.height) == (624, 624)
