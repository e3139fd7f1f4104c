# One image for every process of vqclip (playground/bot, worker, npm start), built two ways:
#   CPU (default):  docker build -t vqclip:cpu .
#   GPU (CUDA 12):  docker build -t vqclip:gpu --build-arg ONNXRUNTIME_NODE_INSTALL=cuda12 .
# onnxruntime-node's install script downloads the CUDA execution provider from NuGet unless told to
# skip; the CUDA runtime libraries it links against (cudart, cuBLAS, cuFFT, cuRAND, cuDNN 9) come from
# NVIDIA's Debian 12 repository and are only installed for the GPU build. The NVIDIA driver itself is
# mounted by the NVIDIA container toolkit at run time (docker-compose.yml reserves the GPU).
FROM node:20-bookworm-slim

# skip: CPU only. cuda12: also the CUDA execution provider.
ARG ONNXRUNTIME_NODE_INSTALL=skip
# CUDA 12 minor release for the runtime libraries (ORT's CUDA 12 build runs on any 12.x).
ARG CUDA_PACKAGE_VERSION=12-6

RUN set -eux; \
    if [ "$ONNXRUNTIME_NODE_INSTALL" = "cuda12" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends ca-certificates curl; \
      curl -fsSL -o /tmp/cuda-keyring.deb \
        https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb; \
      dpkg -i /tmp/cuda-keyring.deb; \
      rm /tmp/cuda-keyring.deb; \
      apt-get update; \
      apt-get install -y --no-install-recommends \
        "cuda-cudart-${CUDA_PACKAGE_VERSION}" "libcublas-${CUDA_PACKAGE_VERSION}" \
        "libcufft-${CUDA_PACKAGE_VERSION}" "libcurand-${CUDA_PACKAGE_VERSION}" libcudnn9-cuda-12; \
      apt-get purge -y curl; \
      rm -rf /var/lib/apt/lists/*; \
    fi

WORKDIR /app
COPY package.json package-lock.json ./
# Dev dependencies included: in the image the processes run TypeScript through tsx (outside it npm start
# and npm run bot|worker run a compiled copy, scripts/build.mjs, which would need a writable /app).
RUN ONNXRUNTIME_NODE_INSTALL="$ONNXRUNTIME_NODE_INSTALL" npm ci --no-audit --no-fund \
    && npm cache clean --force
COPY . .

# Named volumes copy these folders' ownership, so the unprivileged user can write to them.
RUN mkdir -p /data /models && chown node:node /data /models
USER node
ENV DATA_DIR=/data \
    MODELS_DIR=/models \
    HOST=0.0.0.0 \
    PORT=3000 \
    LD_LIBRARY_PATH=/usr/local/cuda/lib64
VOLUME ["/data", "/models"]
EXPOSE 3000

# Everything in one container (private Redis needs redis-server: use REDIS_URL instead). Compose runs
# the bot side (src/bots/main.ts: chat adapters and playground) and workers (src/worker/main.ts) as separate services.
CMD ["node", "--import", "tsx", "src/app/start.ts"]
