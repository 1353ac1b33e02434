# Redis from Debian's packages, for machines that cannot pull redis:7-alpine (compose.yaml's
# default). scripts/docker-build.sh builds it as synqra-redis:bookworm on the local base image;
# compose uses it with SYNQRA_REDIS_IMAGE=synqra-redis:bookworm.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /data
EXPOSE 6379
# Debian's default refuses remote clients without a password (protected mode); in a compose
# network the proxy is remote. The official image ships with protected mode off too.
CMD ["redis-server", "--protected-mode", "no"]
