//! Threshold alarms: REST definitions turned into rule groups and routes. (Being written.)
