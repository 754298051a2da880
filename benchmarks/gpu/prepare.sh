#!/usr/bin/env bash
# Prepare a GPU run, here (where pip reaches an index): download the cp312 wheels that the GPU
# machine's python3 lacks into .whl/, and copy the data the run reads into shared/data/ inside
# the checkout (both git-ignored; ../shared beside the checkout does not travel). Then call the
# device with carry [".whl", "shared"] and `bash benchmarks/gpu/run_all.sh`.
# The GPU machine already has torch (with CUDA), numpy, scipy, scikit-image, matplotlib, rich,
# tqdm, onnx, onnxruntime and onnxscript: those are not fetched and torch is never pinned there.
# SimpleITK (53 MB) is left out: only the DICOM cross-check tests use it, and they need no GPU;
# the working tree that travels is limited to 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHEELS=(
  monai==1.6.1 nibabel==5.4.2 pydicom==3.0.2 pylibjpeg==2.1.0 pylibjpeg-openjpeg==2.6.0
  highdicom==0.28.2 trimesh==5.2.0 fast-simplification==0.2.0
  pydantic==2.14.3 pydantic-core==2.50.4 pydantic-settings==2.16.3 annotated-types
  typing-inspection python-dotenv
)
PLATFORMS=()
for n in 2_17 2_24 2_27 2_28 2_31 2_34 2_35; do PLATFORMS+=(--platform "manylinux_${n}_x86_64"); done
mkdir -p .whl
for spec in "${WHEELS[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 "${PLATFORMS[@]}" -d .whl "$spec"
done
SRC="${SHARED_DATA:-../shared/data}"
mkdir -p shared/data/totalsegmentator_example_ct
cp -r "$SRC/msd_task04_hippocampus" "$SRC/dicom_ct_series_totalsegmentator" shared/data/
cp "$SRC"/totalsegmentator_example_ct/*.nii.gz "$SRC"/totalsegmentator_example_ct/*.json \
  "$SRC"/totalsegmentator_example_ct/SOURCE.md shared/data/totalsegmentator_example_ct/
du -sh .whl shared  # with the tracked files this must stay under the device's 64 MiB
