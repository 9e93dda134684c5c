#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one command for a lent device machine (under 8
# minutes). Its image has CUDA PyTorch, OpenCV, numba, NumPy, SciPy, PyYAML and pytest, a
# system Python that refuses pip installs, and no network. Prepare on this side with
# `make gpu-wheels` (what the image lacks, into .wheels/), then run it there with .wheels
# carried:
#
#     bash bench/gpu_check.sh      # writes its results under $OUT (else bench/results)
#
# A virtual environment that sees the system's packages takes the wheels; then the tests
# marked gpu run, then every benchmark, whatever the tests said: bench/gpu_check.py (models
# in fp32/fp16/bf16, fp16-vs-fp32 agreement, the shipped graphs on a 1080p clip, peak
# memory, syncs) and bench/mtcnn.py in fp32 and fp16. Results: gpu.txt, gpu_tests.txt,
# gpu_check.json, gpu_check.md, gpu_check.log and mtcnn_cuda.json.
set -uo pipefail
out="${OUT:-bench/results}"
mkdir -p "$out"
env="${TMPDIR:-/tmp}/vidgraph-gpu"
python3 -m venv --system-site-packages "$env"
py="$env/bin/python"
"$py" -m pip install -q --no-index --no-deps .wheels/*.whl
"$py" -m pip install -q --no-index --no-deps --no-build-isolation -e .
"$py" -c "import torch; assert torch.cuda.is_available(), 'CUDA is not available here'; \
print(torch.__version__, torch.cuda.get_device_name())" | tee "$out/gpu.txt" || exit 1
timeout 150 "$py" -m pytest -q -p no:cacheprovider -m gpu tests/test_device.py \
  tests/test_mtcnn_detector.py tests/test_senet_model.py tests/test_style_model.py \
  tests/test_denoise_shipped.py tests/test_hardware_video.py >"$out/gpu_tests.txt" 2>&1
echo "pytest exit status $?" >>"$out/gpu_tests.txt"
tail -n 3 "$out/gpu_tests.txt"
timeout 240 "$py" bench/gpu_check.py --out "$out" >"$out/gpu_check.log" 2>&1
echo "gpu_check exit status $?" | tee -a "$out/gpu_check.log"
for half in "" --half; do
  timeout 45 "$py" bench/mtcnn.py --device cuda $half --seconds 1 --batches 1 8 32 \
    --json "$out/mtcnn_cuda${half:+_half}.json" | tail -n 12
done
