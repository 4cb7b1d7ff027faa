//! The OS user names of an instance: the manifest's names shared by every instance of
//! the app, or names of this instance's own (`<instance>-<user>`).

use std::collections::BTreeMap;

use berth_model::LoadedManifest;
use serde::{Deserialize, Serialize};

use crate::RenderError;

/// The longest user name `useradd` (and POSIX portability) accepts.
pub const MAX_USER_NAME: usize = 32;

/// What each component user of the manifest is called on this host. Kept in the
/// instance's state once its users exist: a name once chosen never changes, since
/// files on disk belong to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNames {
    /// `Some(name)`: users are this instance's own, `<name>-<user>`; `None`: the
    /// manifest's names, shared with every other instance of the app on the host.
    pub instance: Option<String>,
    /// The manifest's user name → the name on this host, for every user named so far.
    pub names: BTreeMap<String, String>,
}

impl UserNames {
    /// The manifest's names as they are.
    pub fn shared() -> Self {
        Self::default()
    }

    /// Names of this instance's own, `<instance>-<user>`.
    pub fn per_instance(instance: &str) -> Self {
        Self {
            instance: Some(instance.to_owned()),
            names: BTreeMap::new(),
        }
    }

    /// The name on this host of the manifest's user `user`.
    pub fn of(&self, user: &str) -> String {
        if let Some(name) = self.names.get(user) {
            return name.clone();
        }
        match &self.instance {
            Some(instance) if user != "root" => format!("{instance}-{user}"),
            _ => user.to_owned(),
        }
    }

    /// Every user of `manifest` named (names already chosen are kept as they are).
    ///
    /// # Errors
    ///
    /// [`RenderError::UserNameTooLong`] when `<instance>-<user>` is longer than
    /// [`MAX_USER_NAME`] characters.
    pub fn complete(mut self, manifest: &LoadedManifest) -> Result<Self, RenderError> {
        let m = &manifest.manifest;
        for c in m.components.values() {
            let user = c.user.clone().unwrap_or_else(|| m.app.name.clone());
            if user == "root" || self.names.contains_key(&user) {
                continue;
            }
            let name = self.of(&user);
            if name.len() > MAX_USER_NAME {
                return Err(RenderError::UserNameTooLong {
                    name,
                    user,
                    instance: self.instance.clone().unwrap_or_default(),
                });
            }
            self.names.insert(user, name);
        }
        Ok(self)
    }
}
