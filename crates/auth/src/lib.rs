//! Who may do what: API tokens with a scope (`read`, `write`, `admin`, `join`) and a
//! namespace, stored hashed ([`store`]); the [`Principal`] a checked token stands for and the
//! [`Need`] of a route ([`token`]); the audit log of changes ([`store::AuditEntry`]).
//!
//! Namespaces are the tenancy boundary: a token of namespace `N` reads only series whose `ns`
//! label is `N` and every series it writes gets `ns="N"` from the server. This crate says who
//! is asking; the server enforces it where selectors are evaluated and where series are
//! stored (`docs/security.md`).
//!
//! Architecture invariant: no HTTP; the server turns [`Denied`] into a 401.

pub mod store;
pub mod token;

pub use store::{AuditEntry, Denied, NewToken, Store};
pub use token::{Need, Principal, Scope, Token, check_namespace};
