//! The admin plane: what an operator reads from outside: the `# Nearcache` INFO sections
//! ([`info`]), the Prometheus exposition ([`exposition`]), the HTTP endpoint with `/metrics`,
//! `/healthz` and `/readyz` ([`http`]), and the readiness verdict both report
//! ([`readiness`]). It sits above [`crate::services`] (it reads every subsystem's figures)
//! and below [`crate::connection`] (whose INFO and `NEARCACHE STATS` call it).

pub mod exposition;
pub mod figures;
pub mod http;
pub mod info;
pub mod readiness;

#[cfg(test)]
mod tests;
