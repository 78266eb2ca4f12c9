//! The e-mail notifier (SMTP).

use crate::config::NotifierConfig;
use crate::Group;

pub(crate) struct Email {
    server: String,
}

impl Email {
    pub(crate) fn new(_c: &NotifierConfig) -> Result<Email, String> {
        Err("the email notifier is not implemented yet".into())
    }

    pub(crate) fn server(&self) -> String {
        self.server.clone()
    }

    pub(crate) async fn send(&self, _group: &Group) -> Result<(), String> {
        Err("not implemented".into())
    }
}
