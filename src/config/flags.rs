//! The subcommands of the binary (the option flags are declared in [`super::options`]).

/// Subcommands of the binary.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum Command {
    /// Checks that a sidecar answers on its listen address (--listen or NEARCACHE_LISTEN):
    /// sends PING, exits 0 on PONG (or NOAUTH: it answers, clients authenticate
    /// themselves), 1 otherwise. For Kubernetes exec probes, which cannot reach 127.0.0.1.
    Probe {
        /// How long to wait for the connection and the reply
        #[arg(long, default_value = "1s", value_name = "DURATION")]
        timeout: String,
        /// Only check that the sidecar listens and answers (QUIT), whatever the upstream
        /// does: for a startup probe that lets the application start while Redis is down
        #[arg(long)]
        listening: bool,
    },
}
