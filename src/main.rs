//! `nearcache`: flags -> config -> runtime -> server; exit codes 0 (clean stop), 1 (cannot
//! start), 64 (invalid configuration). `--print-config` prints the configuration and exits.

use std::process::ExitCode;

use clap::Parser;
use nearcache::app::{self, Itself};
use nearcache::config::{Command, Config, ConfigError, Flags};

/// Exit code for an invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let flags = match Flags::try_parse() {
        Ok(f) => f,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if flags.print_config {
        return match Config::print(&flags) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("nearcache: invalid configuration:\n{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nearcache: invalid configuration:\n{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(Command::Probe { timeout, listening }) = &flags.command {
        let check = match listening {
            true => nearcache::app::probe::Check::Listening,
            false => nearcache::app::probe::Check::Serving,
        };
        return probe(config.listen, timeout, check);
    }
    // From here on everything goes through `tracing` (stderr, --log-format, --log-level).
    if let Err(e) = nearcache::logging::init(&config) {
        eprintln!("nearcache: invalid configuration:\n{e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    // One thread (the default): everything runs on this one, with no cross-thread wake-ups
    // and none of the work-stealing scheduler's bookkeeping on every poll.
    let runtime = match config.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(config, flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Itself>() || e.is::<ConfigError>() => {
            eprintln!("nearcache: invalid configuration:\n{e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `nearcache probe`: 0 when the sidecar on `listen` answers `check` within `timeout`.
fn probe(
    listen: std::net::SocketAddr,
    timeout: &str,
    check: nearcache::app::probe::Check,
) -> ExitCode {
    let timeout = match nearcache::config::parse_duration(timeout) {
        Ok(t) if !t.is_zero() => t,
        Ok(_) => {
            eprintln!("nearcache probe: --timeout must be greater than 0");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("nearcache probe: --timeout: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // A listener on every interface is probed on loopback.
    let addr = match listen.ip().is_unspecified() {
        true => std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port()),
        false => listen,
    };
    match nearcache::app::probe::probe(addr, timeout, check) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("nearcache probe: {why}");
            ExitCode::FAILURE
        }
    }
}
