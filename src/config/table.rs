//! The shape of the options table: [`OptionSpec`] (one option as declared) and the
//! `options!` macro that turns the rows of [`super::options`] into everything else.
//!
//! From one row per option the macro derives: the clap flag with its `NEARCACHE_*`
//! environment variable and `--help` text ([`super::Flags`]), the TOML file field, the
//! redacted `Debug` of the flags, the typed [`super::Config`] field, the pick (flag and env,
//! else file, else the declared default, parsed by the row's parser), and the row of
//! [`super::OPTIONS`] that `--print-config` and the documentation test read.

/// What an option is when given nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultText {
    /// This text, parsed like a given value.
    Value(&'static str),
    /// Not set (the `Config` field is `None`); the text says what that means in `--help`
    /// and the docs (`none`, or what applies instead, such as `info` for `--log-level`).
    Unset(&'static str),
}

impl DefaultText {
    /// The text `--help` and the docs show as the default.
    pub const fn shown(self) -> &'static str {
        match self {
            DefaultText::Value(s) | DefaultText::Unset(s) => s,
        }
    }
}

/// One option as declared in [`super::options`].
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    /// The TOML key and `Config` field (`l1_ttl`); the flag is it with `-` (`--l1-ttl`).
    pub key: &'static str,
    /// The environment variable (`NEARCACHE_L1_TTL`).
    pub env: &'static str,
    /// The placeholder of the value in `--help` and the docs (`DURATION`).
    pub value_name: &'static str,
    /// The default.
    pub default: DefaultText,
    /// One line of help.
    pub help: &'static str,
    /// For a secret: the text shown instead of the value (`--print-config`, `Debug`).
    pub redact: Option<fn(&str) -> String>,
    /// Applied by a reload (SIGHUP) without a restart (see `crate::reload`).
    pub live: bool,
}

impl OptionSpec {
    /// The flag as written on a command line (`--l1-ttl`).
    pub fn flag(&self) -> String {
        format!("--{}", self.key.replace('_', "-"))
    }

    /// `text`, or what stands for it when this option is a secret.
    pub fn shown(&self, text: &str) -> String {
        match self.redact {
            Some(redact) => redact(text),
            None => text.to_owned(),
        }
    }
}

/// Declares the options; see the module docs and [`super::options`] for the row syntax:
/// `name: Type = parser, "ENV", "VALUE", default "text" | unset "text", "help"
/// [, secret redactor] [, reload live] [, clap(extra clap arg settings)];`
macro_rules! options {
    ($(
        $name:ident : $ty:ty = $parse:expr,
        $env:tt, $value:tt, $kind:ident $shown:tt, $help:tt
        $(, secret $redact:expr)?
        $(, reload $live:ident)?
        $(, clap($($extra:tt)*))?;
    )*) => {
        /// Every option, one row each, in declaration order.
        pub const OPTIONS: &[OptionSpec] = &[$(spec::$name),*];

        /// Each option's row by its name (`spec::upstream.env`), for code that names one.
        #[allow(non_upper_case_globals)]
        pub mod spec {
            use crate::config::table::{DefaultText, OptionSpec};
            $(
                #[doc = $help]
                pub const $name: OptionSpec = OptionSpec {
                    key: stringify!($name),
                    env: $env,
                    value_name: $value,
                    default: options!(@default $kind $shown),
                    help: $help,
                    redact: options!(@redact $($redact)?),
                    live: options!(@live $($live)?),
                };
            )*
        }

        /// Command-line flags; every option flag also reads its `NEARCACHE_*` environment
        /// variable (clap `env`).
        ///
        /// Values are kept as given (`None` = not given) and parsed in
        /// [`Config::from_parts`]. `Debug` hides secrets.
        #[derive(clap::Parser, Default, Clone)]
        #[command(
            name = "nearcache",
            version,
            about = "A caching sidecar proxy for Redis: L1 for GET/MGET, everything else forwarded.",
            long_about = None
        )]
        pub struct Flags {
            /// A subcommand instead of serving (`probe`).
            #[command(subcommand)]
            pub command: Option<Command>,
            /// TOML file; keys are these flag names with '_' (flags and env win over it)
            #[arg(long, env = "NEARCACHE_CONFIG", value_name = "FILE")]
            pub config: Option<std::path::PathBuf>,
            /// Print the effective configuration as a TOML file --config accepts (secrets redacted) and exit
            #[arg(long)]
            pub print_config: bool,
            $(
                #[doc = $help]
                #[arg(
                    long,
                    env = $env,
                    value_name = $value,
                    help = concat!($help, " [default: ", $shown, "]")
                    $(, hide_env_values = options!(@true $redact))?
                    $(, $($extra)*)?
                )]
                pub $name: Option<String>,
            )*
        }

        impl std::fmt::Debug for Flags {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("Flags")
                    .field("command", &self.command)
                    .field("config", &self.config)
                    .field("print_config", &self.print_config)
                    $(.field(
                        stringify!($name),
                        &self.$name.as_deref().map(|v| spec::$name.shown(v)),
                    ))*
                    .finish()
            }
        }

        /// The TOML file: keys are the flag names with `_`; unknown keys are refused.
        #[derive(serde::Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        pub(super) struct FileConfig {
            $($name: Option<Scalar>,)*
            pub(super) namespace: Option<Vec<toml::Value>>,
            pub(super) warm: Option<toml::Value>,
        }

        /// The validated configuration the rest of the binary runs on.
        #[derive(Debug, Clone)]
        pub struct Config {
            $(
                #[doc = $help]
                pub $name: options!(@type $kind $ty),
            )*
            /// Bounds on client requests (`--max-bulk-bytes`, `--max-array-len`,
            /// `--max-inline-bytes`).
            pub limits: Limits,
            /// Per-pattern cache policies, first match wins (`[[namespace]]`, config file only).
            pub namespaces: Vec<NamespaceConfig>,
            /// Warming at start, from peers and after a flush (`[warm]`, config file only).
            pub warm: WarmConfig,
        }

        impl Config {
            /// The keys of the options whose values differ between `self` and `other`, in
            /// declaration order.
            pub fn differing(&self, other: &Config) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $(
                    if self.$name != other.$name {
                        keys.push(stringify!($name));
                    }
                )*
                keys
            }
        }

        /// Picks every option in declaration order (flag, else file, else default),
        /// recording problems and the texts picked in `r`.
        pub(super) fn pick_all(flags: &Flags, file: &mut FileConfig, r: &mut Resolver) -> Config {
            Config {
                $($name: options!(@pick $kind r, spec::$name, &flags.$name, file.$name.take(), $parse),)*
                limits: Limits {
                    max_bulk_bytes: 0,
                    max_array_len: 0,
                    max_inline_bytes: 0,
                },
                namespaces: Vec::new(),
                warm: WarmConfig::defaults(0),
            }
        }
    };
    (@default default $shown:tt) => { DefaultText::Value($shown) };
    (@default unset $shown:tt) => { DefaultText::Unset($shown) };
    (@redact) => { None };
    (@redact $redact:expr) => { Some($redact) };
    (@true $($ignored:tt)*) => { true };
    (@live) => { false };
    (@live live) => { true };
    (@type default $ty:ty) => { $ty };
    (@type unset $ty:ty) => { Option<$ty> };
    (@pick default $r:ident, $spec:expr, $given:expr, $in_file:expr, $parse:expr) => {
        match $r.pick(&$spec, $given, $in_file, $parse) {
            Some(value) => value,
            // Invalid (the problem is recorded): the default stands in.
            None => $r.default(&$spec, $parse),
        }
    };
    (@pick unset $r:ident, $spec:expr, $given:expr, $in_file:expr, $parse:expr) => {
        $r.pick(&$spec, $given, $in_file, $parse)
    };
}
