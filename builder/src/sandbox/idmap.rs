//! How the sandbox's ids show on disk for each user-namespace mode, for reading back what a step wrote.

use rbuild_runtime::UsernsMode;

use crate::layer::IdMap;

/// How the sandbox's ids show on disk, for reading back what it wrote.
pub fn id_map_for(mode: UsernsMode) -> IdMap {
    match mode {
        UsernsMode::Off | UsernsMode::Full => IdMap { uids: Vec::new(), gids: Vec::new() },
        UsernsMode::Single => IdMap::for_current_user(),
        UsernsMode::Subuid { uid_start, gid_start, count } => IdMap::subordinate(uid_start, gid_start, count),
    }
}
