//! The `user.rootlesscontainers` owner record, as the runtime defines it (`rbuild_runtime::owner_record`).

pub use rbuild_runtime::owner_record::{decode, encode};
