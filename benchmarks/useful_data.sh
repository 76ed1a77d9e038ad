#!/usr/bin/env bash
# What makes the generated data train a good FR model? The ablation of docs/BENCHMARKS.md (issue 19),
# every arm produced by the real commands, then measured by `synthface benchmark` (3 seeds).
#
#   bash benchmarks/useful_data.sh [ROOT]        # default ROOT=runs/useful; about 1 h 40 min on 2 cores
#
# Upstream: the demo chain of the shipped configs (synthface_ray/demo_jobs) up to the FR model and the
# real class centres, under ROOT. Then, each from those:
#   gen480     the generator of the demo before issue 19: class-conditioned, 480 steps
#   gen3000    the same, 3000 steps
#   emb3000    conditioned on the FR class centre of each label (today's demo generator), 3000 steps
# and the generated sets (the demo sampler of that time, pinned here: ScoreMix + AdaptDiff w_max 1 + CFG 2,
# DDIM 10; FR-scored; later --set keys override it):
#   syn-480, syn-3000          the demo plan (FR class centres kept unique at 0.5, 4 per identity and mix)
#   syn-3000-gate              + the consistency gate (fr_cosine >= 0.8, mixes >= 0.3, 4 draws, drop)
#   syn-emb-new                emb3000 on NEW people: PCA-Gaussian embeddings, leakage 0.6, unique at 0.5
#   syn-3000-16                gen3000, 16 images per identity and per mix (1120 images)
# Second round (docs/BENCHMARKS.md, "Second round"; about 1 h 30 min more):
#   gen6000 / syn-6000-16      the class generator trained on to 6000 steps, 1120 images
#   emb1k / emb1k-16           an embedding generator on 1000 other real people (ids 200..1199), 6000 steps,
#                              sampled on 90 new PCA-Gaussian people of their centres (16 per identity / mix)
#   merge                      real + synthetic with and without train-fr's data.same_identity merge
#   aug                        FR trained with RandAugment (4, 16) on real and on syn-3000
# Fourth round (about 13 min more): gen3000's 1120 images, CFG w = 1, no negative, DDPM 30 steps.
# Fifth round (about 1 h 55 min more): the class generator 4x wider (block_out_channels 32/64/128, 3.9M
#   parameters; 49 min) and with ScoreAug (omega to the net; 29 min), each 3000 steps, sampled at CFG w = 1 (guided: W = 2P - E),
#   no negative, DDIM 10, on the same 1120-image plan; benchmarked in b1120.
# Sixth round (about 40 min more, benchmark only): FR trained on the best set (s3000-16-cfg1-noneg) with
#   CosFace instead of ArcFace, with mild RandAugment (2 ops, magnitude 9), and for 600 steps instead of 300;
#   arms of b1120.
# Third round (about 1 h 10 min more): gen3000's 1120-image sets sampled at CFG 1, with DDPM 30 steps,
#   at CFG 1 without the AdaptDiff negative, without mixes (54 people x 21), and "wide": all 100
#   class centres + 40 mixes x 8 images (140 classes) at CFG 1; benchmarked in b1120; and emb3000's new
#   people sampled the same way (CFG w = 1, no negative), benchmarked in ablation
# Benchmarks: $ROOT/benchmark/ablation (280-image arms), $ROOT/benchmark/b1120 (1120-image arms) and
# $ROOT/benchmark/merge and $ROOT/benchmark/aug.
# Finished steps are reused on a re-run (every command here resumes or skips complete outputs).
set -euo pipefail
ROOT=${1:-runs/useful}
SF=${SF:-.venv/bin/synthface}
D=synthface_ray/demo_jobs
mkdir -p "$ROOT"

done_or() { [ -e "$1" ] && echo "reuse $1" || { shift; "$@"; }; }

done_or "$ROOT/toyfaces/manifest.json" $SF toyfaces --config $D/toyfaces.yaml --set output.path=$ROOT/toyfaces
done_or "$ROOT/toyfaces-unseen/manifest.json" $SF toyfaces --config $D/toyfaces_unseen.yaml --set output.path=$ROOT/toyfaces-unseen
done_or "$ROOT/train/fr/export/backbone_config.json" $SF train-fr --config $D/train_fr.yaml \
  --set data.path=$ROOT/toyfaces --set run.storage_path=$ROOT/train
FR=$ROOT/train/fr/export
done_or "$ROOT/centres.parquet" $SF identities --config $D/centres.yaml --set source.faces=$ROOT/toyfaces \
  --set source.fr_model=$FR --set output.path=$ROOT/centres.parquet

generator() {  # name steps condition [--set ...]
  local name=$1 steps=$2 condition=$3; shift 3
  local sets=(--set data.path=$ROOT/toyfaces --set run.storage_path=$ROOT/train --set run.name=$name
              --set optim.max_steps=$steps --set run.checkpoint_every=$steps
              --set preview.every=$(( steps < 1000 ? steps : 1000 ))
              --set generator.condition=$condition --set data.label_embeddings=$ROOT/centres.parquet
              --set data.context_fr_model=null "$@")  # rounds 1-7: one context per label (centres)
  done_or "$ROOT/train/$name/export/condition/metadata.json" $SF train-generator --config $D/train_generator.yaml "${sets[@]}"
}
generator gen480 480 class
generator gen3000 3000 class
# fifth round: capacity and ScoreAug (the class generator of gen3000 otherwise)
generator gen-wide 3000 class --set "generator.block_out_channels=[32, 64, 128]"
generator gen-scoreaug 3000 class --set scoreaug.enabled=true --set generator.scoreaug_dim=11
generator emb3000 3000 embedding
# second round: gen3000 trained on to 6000 steps (a copy of its run folder resumes at step 3000)
[ -e "$ROOT/train/gen6000" ] || { cp -r "$ROOT/train/gen3000" "$ROOT/train/gen6000"; rm -rf "$ROOT/train/gen6000/export"; }
generator gen6000 6000 class
# second round: 1000 other real people (10 images each), their demo-FR centres, an embedding generator on them
done_or "$ROOT/toyfaces-1k/manifest.json" $SF toyfaces --config $D/toyfaces.yaml --set toyfaces.first_identity=200 \
  --set toyfaces.identities=1000 --set toyfaces.images_per_identity=10 --set output.path=$ROOT/toyfaces-1k
done_or "$ROOT/centres-1k.parquet" $SF identities --config $D/centres.yaml --set source.faces=$ROOT/toyfaces-1k \
  --set source.fr_model=$FR --set output.path=$ROOT/centres-1k.parquet
done_or "$ROOT/train/emb1k/export/condition/metadata.json" $SF train-generator --config $D/train_generator.yaml \
  --set data.path=$ROOT/toyfaces-1k --set data.label_embeddings=$ROOT/centres-1k.parquet --set run.storage_path=$ROOT/train \
  --set run.name=emb1k --set optim.max_steps=6000 --set run.checkpoint_every=3000 --set preview.every=1000 \
  --set data.context_fr_model=null
done_or "$ROOT/new1k_ids.parquet" $SF identities --config $D/identities.yaml --set source.real=$ROOT/centres-1k.parquet \
  --set source.count=1000 --set output.path=$ROOT/new1k_ids.parquet

# the demo's identities before issue 19 (class centres kept unique at 0.5) for the class generators
done_or "$ROOT/class_ids.parquet" $SF identities --config $D/centres.yaml --set source.faces=$ROOT/toyfaces \
  --set source.fr_model=$FR --set filter.tau=0.5 --set output.path=$ROOT/class_ids.parquet
# new people for the embedding generator (the demo's identities.yaml)
done_or "$ROOT/new_ids.parquet" $SF identities --config $D/identities.yaml --set source.real=$ROOT/centres.parquet \
  --set source.count=300 --set output.path=$ROOT/new_ids.parquet
plan() {  # identities name per_identity
  done_or "$ROOT/mining-$2/mining.json" $SF mine --config $D/mine.yaml --set input.identities=$1 \
    --set output.path=$ROOT/mining-$2
  done_or "$ROOT/plan-$2-$3.parquet" $SF plan --config $D/plan.yaml --set input.identities=$1 \
    --set input.mining=$ROOT/mining-$2 --set plan.images_per_identity=$3 --set plan.images_per_mix=$3 \
    --set output.path=$ROOT/plan-$2-$3.parquet
}
plan $ROOT/class_ids.parquet class 4
plan $ROOT/class_ids.parquet class 16
plan $ROOT/new_ids.parquet new 4
plan $ROOT/new1k_ids.parquet new1k 16

generate() {  # name generator identities plan [--set ...]
  local name=$1 gen=$2 ids=$3 plan=$4; shift 4
  done_or "$ROOT/generated/$name/manifest.json" $SF generate --config $D/generate.yaml \
    --set sampler.cfg_scale=2.0 --set sampler.negative.w_max=1.0 \
    --set input.plan=$plan --set input.identities=$ids --set model.generator=$ROOT/train/$gen/export \
    --set model.fr=$FR --set output.path=$ROOT/generated --set output.name=$name --set pool.actors=2 "$@"
}
generate s480 gen480 $ROOT/class_ids.parquet $ROOT/plan-class-4.parquet
generate s3000 gen3000 $ROOT/class_ids.parquet $ROOT/plan-class-4.parquet
generate s3000-gate gen3000 $ROOT/class_ids.parquet $ROOT/plan-class-4.parquet \
  --set gate.min_fr_cosine=0.8 --set gate.min_mix_cosine=0.3 --set gate.attempts=4
generate emb-new emb3000 $ROOT/new_ids.parquet $ROOT/plan-new-4.parquet
generate s3000-16 gen3000 $ROOT/class_ids.parquet $ROOT/plan-class-16.parquet
generate s6000-16 gen6000 $ROOT/class_ids.parquet $ROOT/plan-class-16.parquet
generate emb1k-16 emb1k $ROOT/new1k_ids.parquet $ROOT/plan-new1k-16.parquet

# third round: sampling diversity and class count, same 1120 images (docs/BENCHMARKS.md, "Third round")
generate s3000-16-cfg1 gen3000 $ROOT/class_ids.parquet $ROOT/plan-class-16.parquet --set sampler.cfg_scale=1.0
generate s3000-16-ddpm30 gen3000 $ROOT/class_ids.parquet $ROOT/plan-class-16.parquet \
  --set sampler.solver=ddpm --set sampler.steps=30
generate s3000-16-cfg1-noneg gen3000 $ROOT/class_ids.parquet $ROOT/plan-class-16.parquet \
  --set sampler.cfg_scale=1.0 --set sampler.negative.w_max=0.0
done_or "$ROOT/plan-nomix-21.parquet" $SF plan --config $D/plan.yaml --set input.identities=$ROOT/class_ids.parquet \
  --set input.mining=$ROOT/mining-class --set plan.images_per_identity=21 --set plan.images_per_mix=0 \
  --set output.path=$ROOT/plan-nomix-21.parquet
generate s3000-21-nomix gen3000 $ROOT/class_ids.parquet $ROOT/plan-nomix-21.parquet
done_or "$ROOT/mining-wide/mining.json" $SF mine --config $D/mine.yaml --set input.identities=$ROOT/centres.parquet \
  --set pairs.count=40 --set output.path=$ROOT/mining-wide
done_or "$ROOT/plan-wide-8.parquet" $SF plan --config $D/plan.yaml --set input.identities=$ROOT/centres.parquet \
  --set input.mining=$ROOT/mining-wide --set plan.images_per_identity=8 --set plan.images_per_mix=8 \
  --set output.path=$ROOT/plan-wide-8.parquet
generate s3000-wide-8-cfg1 gen3000 $ROOT/centres.parquet $ROOT/plan-wide-8.parquet --set sampler.cfg_scale=1.0
generate emb-new-plain emb3000 $ROOT/new_ids.parquet $ROOT/plan-new-4.parquet \
  --set sampler.cfg_scale=1.0 --set sampler.negative.w_max=0.0
# fourth round: CFG w = 1 without the negative, DDPM 30 steps (the two third-round gains together)
generate s3000-16-plain-ddpm30 gen3000 $ROOT/class_ids.parquet $ROOT/plan-class-16.parquet \
  --set sampler.cfg_scale=1.0 --set sampler.negative.w_max=0.0 --set sampler.solver=ddpm --set sampler.steps=30
# fifth round: the wider and the ScoreAug generator, sampled at CFG w = 1, no negative
generate s-wide-16-plain gen-wide $ROOT/class_ids.parquet $ROOT/plan-class-16.parquet \
  --set sampler.cfg_scale=1.0 --set sampler.negative.w_max=0.0
generate s-scoreaug-16-plain gen-scoreaug $ROOT/class_ids.parquet $ROOT/plan-class-16.parquet \
  --set sampler.cfg_scale=1.0 --set sampler.negative.w_max=0.0

for set in s480 s3000 emb-new s6000-16 emb1k-16 s3000-16-cfg1 s3000-16-cfg1-noneg s3000-21-nomix s3000-wide-8-cfg1; do
  echo "== identities of $set"
  .venv/bin/python benchmarks/identities_report.py --generated $ROOT/generated/$set --real $ROOT/toyfaces --fr $FR
done

B=(--set test.sets="[{name: toyfaces-unseen, path: '$ROOT/toyfaces-unseen'}]" --set output.path=$ROOT/benchmark)
$SF benchmark --config benchmarks/useful_data_ablation.yaml "${B[@]}" --set "arms=[
  {name: real, match: syn-480, sources: [{path: '$ROOT/toyfaces'}]},
  {name: syn-480, sources: [{path: '$ROOT/generated/s480'}]},
  {name: syn-3000, sources: [{path: '$ROOT/generated/s3000'}]},
  {name: syn-3000-gate, sources: [{path: '$ROOT/generated/s3000-gate'}]},
  {name: syn-emb-new, sources: [{path: '$ROOT/generated/emb-new', identities: 70, images: 280}]},
  {name: syn-emb1k-new, sources: [{path: '$ROOT/generated/emb1k-16', identities: 70, images: 280}]},
  {name: syn-emb-new-plain, sources: [{path: '$ROOT/generated/emb-new-plain', identities: 70, images: 280}]},
  {name: real+syn-3000, match: syn-480, sources: [{path: '$ROOT/toyfaces', weight: 0.5},
                                                  {path: '$ROOT/generated/s3000', weight: 0.5}]}]"
$SF benchmark --config benchmarks/useful_data_ablation.yaml "${B[@]}" --set output.name=b1120 --set "arms=[
  {name: real, match: syn-3000-16, sources: [{path: '$ROOT/toyfaces'}]},
  {name: syn-3000-16, sources: [{path: '$ROOT/generated/s3000-16'}]},
  {name: syn-6000-16, sources: [{path: '$ROOT/generated/s6000-16'}]},
  {name: syn-emb1k-new-16, sources: [{path: '$ROOT/generated/emb1k-16', identities: 70, images: 1120}]},
  {name: syn-3000-16-cfg1, sources: [{path: '$ROOT/generated/s3000-16-cfg1'}]},
  {name: syn-3000-16-ddpm30, sources: [{path: '$ROOT/generated/s3000-16-ddpm30'}]},
  {name: syn-3000-16-cfg1-noneg, sources: [{path: '$ROOT/generated/s3000-16-cfg1-noneg'}]},
  {name: syn-3000-21-nomix, sources: [{path: '$ROOT/generated/s3000-21-nomix', images: 1120}]},
  {name: syn-3000-wide-8-cfg1, sources: [{path: '$ROOT/generated/s3000-wide-8-cfg1'}]},
  {name: syn-3000-16-plain-ddpm30, sources: [{path: '$ROOT/generated/s3000-16-plain-ddpm30'}]},
  {name: syn-wide-16-plain, sources: [{path: '$ROOT/generated/s-wide-16-plain'}]},
  {name: syn-scoreaug-16-plain, sources: [{path: '$ROOT/generated/s-scoreaug-16-plain'}]},
  {name: syn-plain-cosface, sources: [{path: '$ROOT/generated/s3000-16-cfg1-noneg'}], train: {margin.name: cosface}},
  {name: syn-plain-ra2m9, sources: [{path: '$ROOT/generated/s3000-16-cfg1-noneg'}],
   train: {augment.randaugment_n: 2, augment.randaugment_m: 9}},
  {name: syn-plain-600, sources: [{path: '$ROOT/generated/s3000-16-cfg1-noneg'}],
   train: {optim.max_steps: 600, optim.milestones: [360, 510]}}]"
REAL="{path: '$ROOT/toyfaces', identities: 70, images: 280, weight: 0.5}"
MERGE="{data.same_identity.fr_model: '$FR', data.same_identity.threshold: 0.8, data.same_identity.action: merge}"
$SF benchmark --config benchmarks/useful_data_ablation.yaml "${B[@]}" --set output.name=merge --set random_init=false --set "arms=[
  {name: real, sources: [{path: '$ROOT/toyfaces', identities: 70, images: 280}]},
  {name: real+syn-3000, sources: [$REAL, {path: '$ROOT/generated/s3000', weight: 0.5}]},
  {name: real+syn-3000-merge, sources: [$REAL, {path: '$ROOT/generated/s3000', weight: 0.5}], train: $MERGE},
  {name: real+emb-new, sources: [$REAL, {path: '$ROOT/generated/emb-new', identities: 70, images: 280, weight: 0.5}]},
  {name: real+emb-new-merge, sources: [$REAL, {path: '$ROOT/generated/emb-new', identities: 70, images: 280, weight: 0.5}],
   train: $MERGE}]"
# second round: strong RandAugment (4 ops, magnitude 16) in FR training, on real and on syn-3000
AUG="{augment.randaugment_n: 4, augment.randaugment_m: 16}"
$SF benchmark --config benchmarks/useful_data_ablation.yaml "${B[@]}" --set output.name=aug --set random_init=false --set "arms=[
  {name: real, sources: [{path: '$ROOT/toyfaces', identities: 70, images: 280}]},
  {name: syn-3000, sources: [{path: '$ROOT/generated/s3000'}]},
  {name: real-randaug, sources: [{path: '$ROOT/toyfaces', identities: 70, images: 280}], train: $AUG},
  {name: syn-3000-randaug, sources: [{path: '$ROOT/generated/s3000'}], train: $AUG}]"
