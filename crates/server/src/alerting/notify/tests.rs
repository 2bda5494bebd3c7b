//! Tests of the notifier handle.
