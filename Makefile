# Thin wrappers over cargo and the `fubar` command line, with the original broker's
# parameter names. `make run mqtt_port=1884 node=other` == `fubar run --mqtt-port 1884 --node other`.

node ?= fubar
mqtt_port ?= 1883
data_dir ?= data
config ?=

FUBAR_ARGS = --node $(node) --mqtt-port $(mqtt_port) --data-dir $(data_dir) $(if $(config),--config $(config))

.PHONY: compile build run print-config reset check test lint fmt clean

compile build:
	cargo build --release

# Runs a broker node in the foreground (Ctrl+C stops it).
run:
	cargo run --release -- run $(FUBAR_ARGS)

print-config:
	cargo run --release -- print-config $(FUBAR_ARGS)

# Deletes the node's data dir (persistent sessions, queued and retained messages) after a
# confirmation prompt; `make reset yes=1` skips it. Refused while the node runs.
reset:
	cargo run --release -- reset $(FUBAR_ARGS) $(if $(yes),--yes)

# Unit tests only (codec fixtures, topic matching, config).
check:
	cargo test --lib

# The whole suite: installs the Mosquitto clients if missing, then unit + black-box tests.
test:
	./scripts/test-deps.sh
	cargo test --locked

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt --all

clean:
	cargo clean
