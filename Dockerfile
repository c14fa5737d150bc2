# SoundHash image: Debian 12 with the same Debian packages the Makefile installs.
FROM debian:12-slim AS build
WORKDIR /src
COPY . .
RUN apt-get update && ops/install-deps.sh && make && strip build/soundhash

FROM debian:12-slim
# curl: the healthcheck below (and handy for /metrics by hand). /var/lib/soundhash belongs to the
# soundhash user, so a named volume mounted there (the edges' shards) starts owned by it.
RUN apt-get update && apt-get install -y --no-install-recommends \
      librdkafka++1 librdkafka1 libpq5 libavro23 libsndfile1 libfftw3-single3 libzstd1 liblmdb0 \
      libsoxr0 libmicrohttpd12 libjansson4 libcurl4 libssl3 ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 soundhash \
    && mkdir -p /var/lib/soundhash && chown soundhash /var/lib/soundhash
COPY --from=build /src/build/soundhash /usr/local/bin/soundhash
USER soundhash
# The daemons answer GET /health on their HTTP port: set SOUNDHASH_HEALTH_URL to it (e.g.
# http://127.0.0.1:9100/health for `worker --http 0.0.0.0:9100`). Unset (one-off commands such
# as `db migrate`), the check passes. docker-compose.yml gives each service its own healthcheck.
ENV SOUNDHASH_HEALTH_URL=""
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=6 \
  CMD ["/bin/sh", "-c", "[ -z \"$SOUNDHASH_HEALTH_URL\" ] || curl -fsS -o /dev/null \"$SOUNDHASH_HEALTH_URL\""]
ENTRYPOINT ["/usr/local/bin/soundhash"]
