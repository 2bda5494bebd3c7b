//! Rule groups: loading, evaluation, alert state, and the rules and alerts API. (Being written.)
