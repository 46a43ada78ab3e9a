# tally in a container: `tally serve` and `tally proxy` from one image.
#
#   docker build -t tally .
#   docker run -v tally-data:/var/lib/tally -p 8080:8080 tally serve --listen 0.0.0.0:8080
#   docker run -v tally-data:/var/lib/tally -p 8081:8081 tally proxy --listen 0.0.0.0:8081 \
#       --admin-listen 0.0.0.0:8082 --spool /var/lib/tally/spool --database postgres://…
#
# The build stage compiles the release binary; the run stage holds only it.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tally

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/tally --create-home tally
COPY --from=build /src/target/release/tally /usr/local/bin/tally
USER tally
WORKDIR /var/lib/tally
# The SQLite default (tally.db) lands in the volume.
VOLUME /var/lib/tally
ENTRYPOINT ["tally"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
