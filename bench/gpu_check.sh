#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one command for a lent device machine: its python3
# holds a CUDA build of torch, and nothing can be downloaded there. Prepare on this side
# with `make gpu-wheels` (the packages its image lacks), then run it there with .wheels
# carried:
#
#     bash bench/gpu_check.sh      # writes its results under $OUT (else bench/results)
#
# It runs the tests marked gpu, then the MTCNN benchmark on the GPU in fp32 and fp16
# (frames per second at 640x480, 720p, 1080p and a 1080p crowd, batches of 1, 8 and 32).
set -euo pipefail
out="${OUT:-bench/results}"
mkdir -p "$out"
python3 -m pip install -q --no-index --find-links .wheels av pydantic mtcnn websocket-client \
  pillow starlette uvicorn hypothesis
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .
python3 -c "import torch; assert torch.cuda.is_available(), 'CUDA is not available here'; \
print(torch.__version__, torch.cuda.get_device_name())" | tee "$out/gpu.txt"
python3 -m pytest -q -m gpu tests/test_device.py tests/test_mtcnn_detector.py \
  tests/test_senet_model.py tests/test_style_model.py tests/test_denoise_shipped.py \
  | tee "$out/gpu_tests.txt"
python3 bench/mtcnn.py --device cuda --seconds 2 --json "$out/mtcnn_cuda.json" \
  | tee "$out/mtcnn_cuda.txt"
python3 bench/mtcnn.py --device cuda --half --seconds 2 --json "$out/mtcnn_cuda_half.json" \
  | tee "$out/mtcnn_cuda_half.txt"
