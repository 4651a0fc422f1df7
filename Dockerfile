# MPIM image: one image, every role; the command picks the role (see docker-compose.yml).
#   docker build -t mpim .
#   docker run --rm mpim serve user --instance-id user-1 --port 7101   (plus MPIM_* settings)
# Written carefully but not built on the development machine (no Docker daemon there).

FROM python:3.11-slim AS build
WORKDIR /src
# Dependencies ship as wheels (grpcio, uvloop, hiredis, argon2-cffi): no compiler needed.
COPY pyproject.toml README.md ./
COPY mpim ./mpim
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --create-home --uid 10001 mpim
USER mpim
WORKDIR /home/mpim
ENV PYTHONUNBUFFERED=1 \
    MPIM_GATEWAY__HOST=0.0.0.0 \
    MPIM_GATEWAY__HTTP_HOST=0.0.0.0 \
    MPIM_RPC__HOST=0.0.0.0
# Gateways: 6000 (TCP line protocol), 6001 (HTTP/WebSocket). Services: their gRPC --port.
EXPOSE 6000 6001
ENTRYPOINT ["mpim"]
CMD ["--help"]
