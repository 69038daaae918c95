"""``wandata clip`` (CLIP embeddings, aesthetic score, text filters, semantic dedup) and
``wandata query`` (clips closest to a text); docs/quality.md, "CLIP"."""
from __future__ import annotations

import json
from pathlib import Path

import click

from wandata.cli.options import EXIT_ERROR


def model_options(command):
    """The CLIP model options both commands share."""
    for opt in reversed([
        click.option("-d", "--dataset", default="dataset", show_default=True,
                     type=click.Path(exists=True, file_okay=False, path_type=Path), help="Dataset directory."),
        click.option("--model", default="ViT-L-14", show_default=True,
                     help="open_clip model name (ViT-L-14 is the one the aesthetic head was trained on)."),
        click.option("--pretrained", default="openai", show_default=True,
                     help="open_clip pretrained tag, downloaded once into --cache-dir."),
        click.option("--clip-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="A local open_clip checkpoint for --model (offline; replaces --pretrained)."),
        click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Where downloaded weights are kept (default ~/.cache/wandata/clip)."),
        click.option("--device", default="auto", show_default=True,
                     help="auto (CUDA when present), cpu, cuda or cuda:N."),
        click.option("--batch-size", type=click.IntRange(1, 4096), default=48, show_default=True,
                     help="Frames per forward pass."),
    ]):
        command = opt(command)
    return command


def _fail(message: str):
    click.echo(f"error: {message}", err=True)
    raise SystemExit(EXIT_ERROR)


def _given(ctx, name: str) -> bool:
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def _prepare(ctx, dataset, model, pretrained, clip_weights, cache_dir, device, batch_size):
    """The manifest, the clips to work on (kept after review decisions) and their stored or
    fresh embeddings."""
    from wandata.dataset import review
    from wandata.dataset.manifest import MANIFEST_NAME, Manifest
    from wandata.quality import clip as qclip

    if not (dataset / MANIFEST_NAME).exists():
        raise click.UsageError(f"{dataset} has no {MANIFEST_NAME}; run `wandata ingest` first")
    if clip_weights is not None and _given(ctx, "pretrained"):
        raise click.UsageError("--pretrained and --clip-weights both name the weights; give one")
    manifest = Manifest(dataset)
    seen = {c.clip_id for c in review.reviewed(dataset, manifest.all_clips()) if c.status == "kept" and c.path}
    clips = [c for c in manifest.all_clips() if c.clip_id in seen]
    embedder = qclip.load_embedder(model, pretrained, weights=clip_weights, cache_dir=cache_dir,
                                   device=device, batch_size=batch_size)
    store, computed = qclip.embed_clips(dataset, clips, embedder)
    return manifest, clips, embedder, store, computed


@click.command()
@model_options
@click.option("--aesthetic/--no-aesthetic", default=True, show_default=True,
              help="Score each clip with the LAION aesthetic predictor (needs ViT-L-14 embeddings).")
@click.option("--aesthetic-weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The predictor's .pth file (offline); default: downloaded once into --cache-dir.")
@click.option("--drop-if", multiple=True, metavar="TEXT",
              help="Drop clips that look like this text (repeatable), e.g. \"text overlay, watermark, logo\".")
@click.option("--drop-threshold", type=click.FloatRange(-1, 1), default=0.25, show_default=True,
              help="Cosine similarity at or above which --drop-if drops.")
@click.option("--keep-if", multiple=True, metavar="TEXT",
              help="Keep only clips that look like one of these texts (repeatable).")
@click.option("--keep-threshold", type=click.FloatRange(-1, 1), default=0.2, show_default=True,
              help="Cosine similarity below which (for every --keep-if) a clip is dropped.")
@click.option("--dedup", is_flag=True, help="Drop semantic duplicates: clips whose embeddings are this close.")
@click.option("--min-similarity", type=click.FloatRange(-1, 1), default=0.95, show_default=True,
              help="Cosine similarity at or above which two clips are the same scene (--dedup).")
@click.option("--keep-rule", type=click.Choice(["sharpest", "aesthetic", "longest"]), default="sharpest",
              show_default=True, help="Which clip of a duplicate group stays (--dedup).")
@click.option("--dry-run", is_flag=True, help="Print what would be dropped; change nothing in the manifest.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_context
def clip(ctx, dataset, model, pretrained, clip_weights, cache_dir, device, batch_size, aesthetic,
         aesthetic_weights, drop_if, drop_threshold, keep_if, keep_threshold, dedup, min_similarity,
         keep_rule, dry_run, as_json):
    """Embed every kept clip with CLIP (stored in DATASET/clip_embeddings.parquet, only new or
    changed clips are computed), score it with the aesthetic predictor, and drop clips by text
    prompt (--drop-if/--keep-if) or as semantic duplicates (--dedup). Every drop is a manifest
    row with its reason code; the file stays, so `wandata review` can keep it anyway."""
    import numpy as np

    from wandata.quality import clip as qclip
    from wandata.quality import duplicates

    for name, needs, flag in (("drop_threshold", drop_if, "--drop-if"), ("keep_threshold", keep_if, "--keep-if"),
                              ("min_similarity", dedup, "--dedup"), ("keep_rule", dedup, "--dedup")):
        if _given(ctx, name) and not needs:
            raise click.UsageError(f"--{name.replace('_', '-')} acts only with {flag}")
    if aesthetic_weights is not None and not aesthetic:
        raise click.UsageError("--aesthetic-weights and --no-aesthetic: the weights would not be used")
    if keep_rule == "aesthetic" and not aesthetic:
        raise click.UsageError("--keep-rule aesthetic needs the aesthetic score: leave out --no-aesthetic")
    try:
        manifest, clips, embedder, store, computed = _prepare(ctx, dataset, model, pretrained, clip_weights,
                                                              cache_dir, device, batch_size)
        if aesthetic and len(store.ids):
            head = qclip.load_aesthetic(aesthetic_weights, cache_dir, dim=store.emb.shape[1])
            scores = qclip.aesthetic_scores(head, store.emb)
            if computed or not np.allclose(scores, store.aesthetic, equal_nan=False):
                store.aesthetic, computed = scores.astype(np.float32), computed or -1
        if computed:
            store.write(dataset)
        emb = qclip.vectors_of(store, clips)
        where = store.index()
        drops = qclip.text_filter(clips, emb, embedder, list(drop_if), drop_threshold, list(keep_if), keep_threshold)
        gone = {c.clip_id for c, _, _ in drops}
        dups = []
        if dedup:
            rest = [i for i, c in enumerate(clips) if c.clip_id not in gone]
            scores = store.aesthetic[[where[clips[i].clip_id] for i in rest]] if aesthetic else None
            dups = duplicates.find_semantic_duplicates([clips[i] for i in rest], emb[rest], min_similarity,
                                                       keep_rule, scores)
    except (qclip.ClipError, RuntimeError, ValueError) as e:
        _fail(str(e))
    rows = []
    for c, code, message in drops:
        rows.append({"clip_id": c.clip_id, "path": c.path, "reason_code": str(code), "reason": message})
        if not dry_run:
            c.status, c.reason_code, c.reason = "dropped", str(code), message
    for c, kept, sim, size, why in dups:
        before = (c.status, c.reason_code, c.reason)
        duplicates.mark_semantic_duplicate(c, kept, sim, size, why, min_similarity, keep_rule)
        rows.append({"clip_id": c.clip_id, "path": c.path, "reason_code": c.reason_code, "reason": c.reason,
                     "kept": kept.clip_id})
        if dry_run:
            c.status, c.reason_code, c.reason = before
    if rows and not dry_run:
        manifest.save()
    result = {"clips": len(clips), "embedded": max(computed, 0), "model": embedder.key,
              "device": embedder.device, "dropped": rows, "dry_run": dry_run}
    if aesthetic and len(clips):
        a = store.aesthetic[[where[c.clip_id] for c in clips]]
        result["aesthetic"] = {"min": float(np.min(a)), "median": float(np.median(a)), "max": float(np.max(a))}
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{len(clips)} kept clips, {result['embedded']} embedded now ({embedder.key} on {embedder.device})")
    if "aesthetic" in result:
        s = result["aesthetic"]
        click.echo(f"aesthetic score: min {s['min']:.2f}, median {s['median']:.2f}, max {s['max']:.2f}")
    verb = "would drop" if dry_run else "dropped"
    for r in rows:
        click.echo(f"{verb} {r['path'] or r['clip_id']} [{r['reason_code']}]: {r['reason']}")
    click.echo(f"{len(rows)} clips {verb}")


@click.command()
@click.argument("text")
@model_options
@click.option("--top", type=click.IntRange(1), default=10, show_default=True, help="How many clips to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
def query(ctx, text, dataset, model, pretrained, clip_weights, cache_dir, device, batch_size, top, as_json):
    """List the kept clips closest to TEXT (CLIP cosine similarity, best first). Embeds clips
    that have no stored embedding yet."""
    from wandata.quality import clip as qclip

    try:
        _, clips, embedder, store, computed = _prepare(ctx, dataset, model, pretrained, clip_weights,
                                                      cache_dir, device, batch_size)
        if computed:
            store.write(dataset)
        emb = qclip.vectors_of(store, clips)
        order, sims = qclip.rank(embedder.texts([text])[0], emb)
    except (qclip.ClipError, RuntimeError, ValueError) as e:
        _fail(str(e))
    hits = [{"rank": r + 1, "similarity": round(float(sims[i]), 6), "clip_id": clips[i].clip_id,
             "path": clips[i].path, "caption": clips[i].caption} for r, i in enumerate(order[:top].tolist())]
    if as_json:
        click.echo(json.dumps(hits))
        return
    for h in hits:
        click.echo(f"{h['rank']:>3}  {h['similarity']:.4f}  {h['path']}  {h['caption']!r}")
