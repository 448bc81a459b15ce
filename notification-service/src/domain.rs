//! The values a notification's `status` and `channel` columns take.

/// `unread` → `read` for in-app notifications; `pending` → `sent` or `failed` for mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unread,
    Read,
    Pending,
    Sent,
    Failed,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Unread => "unread",
            Status::Read => "read",
            Status::Pending => "pending",
            Status::Sent => "sent",
            Status::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    InApp,
    Email,
}

impl Channel {
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::InApp => "in_app",
            Channel::Email => "email",
        }
    }
}

/// The `type` of notifications made from events.
pub mod kind {
    pub const WELCOME: &str = "welcome";
    pub const PROFILE_UPDATED: &str = "profile_updated";
    pub const ACCOUNT_DELETED: &str = "account_deleted";
    pub const ORDER_CREATED: &str = "order_created";
    pub const ORDER_STATUS: &str = "order_status";
}
