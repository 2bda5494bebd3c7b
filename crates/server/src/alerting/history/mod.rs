//! The alarm history: durable state changes and notification attempts. (Being written.)
