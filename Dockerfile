# SoundHash image: Debian 12 with the same Debian packages the Makefile installs.
FROM debian:12-slim AS build
WORKDIR /src
COPY . .
RUN apt-get update && ops/install-deps.sh && make && strip build/soundhash

FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      librdkafka++1 librdkafka1 libpq5 libavro23 libsndfile1 libfftw3-single3 libzstd1 liblmdb0 \
      libsoxr0 libmicrohttpd12 libjansson4 libcurl4 libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 soundhash
COPY --from=build /src/build/soundhash /usr/local/bin/soundhash
USER soundhash
ENTRYPOINT ["/usr/local/bin/soundhash"]
