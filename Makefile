# Thin wrappers over cargo and the `fubar` command line, with the original broker's
# parameter names. `make run mqtt_port=1884 node=other` == `fubar run --mqtt-port 1884 --node other`.

node ?= fubar
mqtt_port ?= 1883
data_dir ?= data
config ?=
http_port ?=

FUBAR_ARGS = --node $(node) --mqtt-port $(mqtt_port) --data-dir $(data_dir) $(if $(config),--config $(config)) $(if $(http_port),--http-port $(http_port))

# Operator commands reach a running node's admin API: the URL from http_port (or the
# config), the token from <data_dir>/admin.token; url= and token= override both.
url ?=
token ?=
FUBAR_CLI = cargo run --release --quiet --
ADMIN_ARGS = --data-dir $(data_dir) $(if $(config),--config $(config)) $(if $(http_port),--http-port $(http_port)) $(if $(url),--url $(url)) $(if $(token),--token $(token))
require = @test -n "$($(1))" || { echo "make $@: $(1)= is required" >&2; exit 2; }

.PHONY: compile build run print-config reset check test lint fmt clean \
	state account-set account-get account-del account-all acl-set acl-get acl-del acl-all

compile build:
	cargo build --release

# Runs a broker node in the foreground (Ctrl+C stops it).
run:
	cargo run --release -- run $(FUBAR_ARGS)

print-config:
	cargo run --release -- print-config $(FUBAR_ARGS)

state:
	@$(FUBAR_CLI) state $(ADMIN_ARGS)

# The password goes to the command's stdin (through the environment, so no shell quoting
# gets in the way), never onto its command line.
account-set: export FUBAR_MAKE_PASSWORD = $(password)
account-set:
	$(call require,username)
	$(call require,password)
	@printf '%s\n' "$$FUBAR_MAKE_PASSWORD" | $(FUBAR_CLI) account set $(username) $(ADMIN_ARGS)

account-get:
	$(call require,username)
	@$(FUBAR_CLI) account get $(username) $(ADMIN_ARGS)

account-del:
	$(call require,username)
	@$(FUBAR_CLI) account del $(username) $(ADMIN_ARGS)

account-all:
	@$(FUBAR_CLI) account all $(ADMIN_ARGS)

# allow=true: clients from ip= connect without credentials; allow=false: they are refused.
acl-set:
	$(call require,ip)
	@case "$(allow)" in true) v=--allow;; false) v=--deny;; \
	  *) echo "make acl-set: allow=true or allow=false is required" >&2; exit 2;; esac; \
	  $(FUBAR_CLI) acl set $(ip) $$v $(ADMIN_ARGS)

acl-get:
	$(call require,ip)
	@$(FUBAR_CLI) acl get $(ip) $(ADMIN_ARGS)

acl-del:
	$(call require,ip)
	@$(FUBAR_CLI) acl del $(ip) $(ADMIN_ARGS)

acl-all:
	@$(FUBAR_CLI) acl all $(ADMIN_ARGS)

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
