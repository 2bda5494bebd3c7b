//! The notifier: routing, grouping, inhibition, silences and receivers. (Being written.)
