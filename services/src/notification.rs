//! Notification: one confirmation email per saga, delivered into a Maildir under `DATA_DIR` by
//! the Maildir rules (write into `tmp/`, then rename into `new/`), where any mail client can
//! read it.
//!
//! **Invariant: at most one mail per saga, and a sent record for exactly the sagas mailed.**
//! The file name is fixed per saga, so writing the mail again (after a crash between the write
//! and the commit of the barrier) replaces it instead of adding a second one. A mail that
//! cannot be written (a full disk) is not a bad command: the command waits, unacknowledged,
//! until it can be.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use sagaflow_events::{CommandBody, CommandMessage, Forgotten, OrderId, Participant};
use serde::{Deserialize, Serialize};

use crate::barrier::Answer;
use crate::domain::{abort, get_json, put_json, scan_json, Books, Domain, DomainError, TxResult};

pub struct Notification {
    pub maildir: PathBuf,
    /// Mails written since the last batch was made durable.
    unsynced: AtomicUsize,
}

/// Writes out everything cached for the file system that holds `path`, and reports a write
/// that failed since the last time (Linux 5.8 and later report those errors from `syncfs`).
fn sync_file_system(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(path)?;
    // SAFETY: syncfs takes a file descriptor we own, open for the duration of the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// What was sent for one saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sent {
    pub order_id: OrderId,
    pub mails: u64,
}

fn key(saga_id: &str) -> String {
    format!("sent/{saga_id}")
}

impl Notification {
    pub fn new(data_dir: &std::path::Path) -> std::io::Result<Self> {
        let maildir = data_dir.join("Maildir");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(maildir.join(sub))?;
        }
        Ok(Self { maildir, unsynced: AtomicUsize::new(0) })
    }

    fn deliver(&self, command: &CommandMessage) -> std::io::Result<()> {
        let CommandBody::SendNotification { user_id, amount_cents, items } = &command.body else {
            return Ok(());
        };
        let name = format!("{}.sagaflow", command.saga_id);
        let lines: Vec<String> = items
            .iter()
            .map(|l| format!("  {} x {} at {}", l.quantity, l.product_id, l.unit_price_cents))
            .collect();
        let mail = format!(
            "From: orders@sagaflow.invalid\r\nTo: {user_id}@sagaflow.invalid\r\nSubject: Your order {order} is confirmed\r\n\
             Date: {date}\r\nMessage-ID: <{saga}@sagaflow.invalid>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
             Thank you! Order {order} is confirmed.\r\n\r\n{lines}\r\n\r\nTotal: {amount_cents}\r\n",
            order = command.order_id,
            saga = command.saga_id,
            date = sagaflow_runtime::rfc3339(sagaflow_runtime::now_millis()),
            lines = lines.join("\r\n"),
        );
        // Not synced here: `make_durable` syncs the whole batch's mails at once, before the
        // commit that records them as sent. A crash before that commit leaves a mail that the
        // redelivered command writes again under the same name.
        let tmp = self.maildir.join("tmp").join(&name);
        std::fs::File::create(&tmp)?.write_all(mail.as_bytes())?;
        let delivered = self.maildir.join("new").join(&name);
        std::fs::rename(&tmp, &delivered)?;
        self.unsynced.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Mails in `new/`, for tests and the chaos check.
    pub fn delivered(&self) -> usize {
        std::fs::read_dir(self.maildir.join("new")).map(|d| d.count()).unwrap_or(0)
    }
}

impl Domain for Notification {
    fn participant(&self) -> Participant {
        Participant::Notification
    }

    fn act(&self, books: &Books<'_>, command: &CommandMessage) -> TxResult<Answer> {
        let key = key(command.saga_id.as_str());
        if get_json::<Sent>(books, &key)?.is_some() {
            return abort(DomainError::Inconsistent(format!("saga {} was mailed already", command.saga_id)));
        }
        // A batch that cannot be made durable is applied again later, and delivers again: the
        // mail's file name is fixed by the saga, so that is still one mail.
        if let Err(e) = self.deliver(command) {
            return abort(DomainError::Unavailable(format!("cannot write the mail: {e}")));
        }
        put_json(books, &key, &Sent { order_id: command.order_id.clone(), mails: 1 });
        Ok(Answer::success())
    }

    fn undo(&self, _: &Books<'_>, _: &CommandMessage, _: bool) -> TxResult<()> {
        // An email cannot be unsent; the saga never asks (notification has no compensation).
        Ok(())
    }

    fn forget(&self, books: &Books<'_>, saga: &Forgotten) -> TxResult<()> {
        // The mail itself stays: it is the customer's, not the books'.
        books.remove(&key(saga.saga_id.as_str()));
        Ok(())
    }

    /// Makes the batch's mails durable with one `syncfs` of the Maildir's file system: the
    /// mails' data, their names in `new/`, in one journal commit, whatever the batch's size.
    /// (One `fdatasync` per mail in line capped the whole system's throughput; eight threads
    /// doing them in parallel cost a thread spawn per batch and still a sync per mail.)
    fn make_durable(&self) -> Result<(), DomainError> {
        if self.unsynced.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        sync_file_system(&self.maildir.join("new"))
            .map_err(|e| DomainError::Unavailable(format!("cannot make the mails durable: {e}")))?;
        // Only now: a batch that could not be synced keeps its mails for the next try.
        self.unsynced.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn view(&self, books: &sled::Tree) -> serde_json::Value {
        let mut per_order: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
        for (_, sent) in scan_json::<Sent>(books, "sent/") {
            let n = per_order.get(sent.order_id.as_str()).and_then(|v| v.as_u64()).unwrap_or(0);
            per_order.insert(sent.order_id.to_string(), n.saturating_add(sent.mails).into());
        }
        serde_json::json!({ "notifications": per_order, "maildir": self.maildir, "delivered": self.delivered() })
    }

    fn path(&self) -> &'static str {
        "/notifications"
    }
}
