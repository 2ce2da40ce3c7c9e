//! Energy accounting: daily and monthly energy from lifetime counters, data completeness, KPIs,
//! grid settlement import and reconciliation.
//!
//! The arithmetic ([`counters`], [`kpi`], [`reconcile`]) is pure. This module reads the store but
//! never writes samples; the only thing it writes is imported settlements.

pub mod counters;
