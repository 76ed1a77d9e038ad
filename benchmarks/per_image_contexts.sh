#!/usr/bin/env bash
# Issue 19, eighth round (docs/BENCHMARKS.md): per-image FR contexts (IDiff-Face) against one class
# centre per person for the demo's embedding-conditioned generator, each drawn with the demo's old
# sampler (CFG w = 2 + AdaptDiff linear w_max 1) and its present one (CFG w = 1, no negative); then
# both generators trained on to 3000 steps and drawn 16 images per identity and mix.
#
#   bash benchmarks/per_image_contexts.sh [ROOT]   # default ROOT=runs/per_image; about 1 h 40 min on 2 cores
#
# The upstream is one `synthface demo` run under ROOT/demo: its FR model, centres, new people, mining,
# plan, and its generator (per-image contexts, 1500 steps) and generated set (CFG 1, no negative),
# which are the syn-img-cfg1 arm. Finished steps are reused on a re-run.
set -euo pipefail
ROOT=${1:-runs/per_image}
SF=${SF:-.venv/bin/synthface}
PY=${PY:-.venv/bin/python}
J=synthface_ray/demo_jobs
D=$ROOT/demo
FR=$D/train/fr/export
mkdir -p "$ROOT"

done_or() { [ -e "$1" ] && echo "reuse $1" || { shift; "$@"; }; }

$SF demo --root "$D"   # reuses its complete stages

generator() {  # run-name steps contexts(image|centre)
  local name=$1 steps=$2 fr=null
  [ "$3" = image ] && fr=$FR
  done_or "$ROOT/train/$name/export/condition/metadata.json" $SF train-generator --config $J/train_generator.yaml \
    --set data.path=$D/toyfaces --set data.label_embeddings=$D/centres.parquet --set data.context_fr_model=$fr \
    --set run.storage_path=$ROOT/train --set run.name=$name --set optim.max_steps=$steps \
    --set run.checkpoint_every=1500
}
generate() {  # name generator-export plan [--set ...]
  local name=$1 gen=$2 plan=$3; shift 3
  done_or "$ROOT/generated/$name/manifest.json" $SF generate --config $J/generate.yaml \
    --set input.plan=$plan --set input.identities=$D/identities.parquet --set model.generator=$gen \
    --set model.fr=$FR --set output.path=$ROOT/generated --set output.name=$name "$@"
}
OLD=(--set sampler.cfg_scale=2.0 --set sampler.negative.schedule=linear --set sampler.negative.w_max=1.0)

# part 1: 1500 steps, the demo's plan (300 images)
generator centre 1500 centre
generate centre "$ROOT/train/centre/export" $D/plan.parquet "${OLD[@]}"
generate centre-cfg1 "$ROOT/train/centre/export" $D/plan.parquet
generate img "$D/train/generator/export" $D/plan.parquet "${OLD[@]}"

# part 2: copies of both run folders trained on to 3000 steps, 16 images per identity and mix
for pair in "img3000 $D/train/generator" "centre3000 $ROOT/train/centre"; do
  set -- $pair
  [ -e "$ROOT/train/$1" ] || { cp -r "$2" "$ROOT/train/$1"; rm -rf "$ROOT/train/$1/export"; }
done
generator img3000 3000 image
generator centre3000 3000 centre
done_or "$ROOT/plan16.parquet" $SF plan --config $J/plan.yaml --set input.identities=$D/identities.parquet \
  --set input.mining=$D/mining --set plan.images_per_identity=16 --set plan.images_per_mix=16 \
  --set output.path=$ROOT/plan16.parquet
generate img3000-16 "$ROOT/train/img3000/export" $ROOT/plan16.parquet
generate centre3000-16 "$ROOT/train/centre3000/export" $ROOT/plan16.parquet

for set in $D/generated/demo $ROOT/generated/centre $ROOT/generated/centre-cfg1 $ROOT/generated/img \
           $ROOT/generated/img3000-16 $ROOT/generated/centre3000-16; do
  echo "== identities of $set"
  $PY benchmarks/identities_report.py --generated "$set" --real $D/toyfaces --fr $FR
done

B=(--set test.sets="[{name: toyfaces-unseen, path: '$D/toyfaces-unseen'}]" --set output.path=$ROOT/benchmark)
$SF benchmark --config benchmarks/useful_data_ablation.yaml "${B[@]}" --set output.name=eighth --set "arms=[
  {name: real, match: synthetic, sources: [{path: '$D/toyfaces'}]},
  {name: synthetic, sources: [{path: '$ROOT/generated/centre'}]},
  {name: syn-img, sources: [{path: '$ROOT/generated/img'}]},
  {name: syn-cfg1, sources: [{path: '$ROOT/generated/centre-cfg1'}]},
  {name: syn-img-cfg1, sources: [{path: '$D/generated/demo'}]},
  {name: real+syn-img-cfg1, match: synthetic, sources: [{path: '$D/toyfaces', weight: 0.5},
                                                        {path: '$D/generated/demo', weight: 0.5}]},
  {name: real-600, sources: [{path: '$D/toyfaces', images: 600}]}]"
$SF benchmark --config benchmarks/useful_data_ablation.yaml "${B[@]}" --set output.name=eighth-1200 --set "arms=[
  {name: real, match: syn-img3000, sources: [{path: '$D/toyfaces'}]},
  {name: syn-img3000, sources: [{path: '$ROOT/generated/img3000-16'}]},
  {name: syn-centre3000, sources: [{path: '$ROOT/generated/centre3000-16'}]}]"
