# docker build -t fubar . && docker run -p 1883:1883 -v fubar-data:/var/lib/fubar fubar
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin fubar

FROM debian:bookworm-slim
COPY --from=build /src/target/release/fubar /usr/local/bin/fubar
ENV FUBAR_NODE__DATA_DIR=/var/lib/fubar FUBAR_NODE__LOG_DIR=/var/log/fubar
VOLUME ["/var/lib/fubar"]
# MQTT, MQTTS (when a certificate is configured), HTTP admin API and /metrics.
EXPOSE 1883 8883 8080
ENTRYPOINT ["fubar"]
CMD ["run"]
