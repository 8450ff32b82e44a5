# One image for every sagaflow program. Build: docker build -t sagaflow .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# librdkafka (the Kafka transport's client) is built from the sources rdkafka ships: it needs make.
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --workspace --bins \
 && mkdir /out \
 && cp target/release/orchestrator target/release/payment target/release/inventory \
       target/release/notification target/release/sagactl /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /data sagaflow && mkdir /data && chown sagaflow /data
COPY --from=build /out/ /usr/local/bin/
USER sagaflow
ENV LOG_FORMAT=json
VOLUME /data
