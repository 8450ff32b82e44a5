//! The orchestrator's HTTP API, for people: small tables instead of JSON.

use anyhow::{bail, Context};
use serde_json::Value;

pub struct Api {
    base: String,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer` when the system has an `API_TOKEN`.
    token: Option<String>,
    output: Output,
}

/// How a command prints what the API answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, as it came, for scripts.
    Json,
}

impl Api {
    pub fn new(base: &str, token: Option<String>, output: Output) -> Self {
        Self { base: base.trim_end_matches('/').to_owned(), http: reqwest::Client::new(), token, output }
    }

    /// The URL of `/orders/{id}[/{action}]`, the id percent-encoded as one path segment (an id
    /// may hold `:` or `.`, and a typo must not reach another route).
    fn order_url(&self, order_id: &str, action: Option<&str>) -> anyhow::Result<reqwest::Url> {
        let mut url =
            reqwest::Url::parse(&self.base).with_context(|| format!("{} is not a URL", self.base))?;
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("{} cannot be a base URL", self.base))?
            .pop_if_empty()
            .push("orders")
            .push(order_id)
            .extend(action);
        Ok(url)
    }

    /// Prints `body` as JSON and returns true when asked for JSON.
    fn printed_as_json(&self, body: &Value) -> bool {
        if self.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
        }
        self.output == Output::Json
    }

    /// Sends `request` with the token, and turns an error status into its JSON `error`.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the orchestrator at {}", self.base))?;
        let status = response.status();
        if !status.is_success() {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            bail!("{status}: {}", body["error"].as_str().unwrap_or("no details"));
        }
        Ok(response)
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        Ok(self.send(request).await?.json().await.unwrap_or(Value::Null))
    }

    pub async fn status(&self, order_id: &str) -> anyhow::Result<()> {
        let o = self.call(self.http.get(self.order_url(order_id, None)?)).await?;
        if self.printed_as_json(&o) {
            return Ok(());
        }
        println!("order   {}", o["orderId"].as_str().unwrap_or(order_id));
        println!("state   {}{}", o["state"].as_str().unwrap_or("?"), reason(&o));
        if let Some(amount) = o["amountCents"].as_u64() {
            println!("amount  {}.{:02}", amount / 100, amount % 100);
        }
        println!("trace   {}", o["traceId"].as_str().unwrap_or("-"));
        println!(
            "\n{:<14} {:<20} {:>8}  {:<20} {:>8}  LAST ERROR",
            "STEP", "STATE", "ATTEMPTS", "COMPENSATION", "ATTEMPTS"
        );
        for s in o["steps"].as_array().into_iter().flatten() {
            let (cs, ca) = match s["compensation"].as_object() {
                Some(c) => (c["state"].as_str().unwrap_or("-").to_owned(), c["attempts"].to_string()),
                None => ("(none)".to_owned(), "-".to_owned()),
            };
            // The compensation's error when it has one: it is the later of the two.
            let error = s["compensation"]["lastError"].as_str().or(s["lastError"].as_str()).unwrap_or("-");
            println!(
                "{:<14} {:<20} {:>8}  {:<20} {:>8}  {}",
                s["name"].as_str().unwrap_or("?"),
                s["state"].as_str().unwrap_or("?"),
                s["attempts"],
                cs,
                ca,
                error.chars().take(80).collect::<String>()
            );
        }
        println!("\n{:<26} {:<44} NOTE", "TIME", "INPUT");
        for h in o["history"].as_array().into_iter().flatten() {
            println!(
                "{:<26} {:<44} {}",
                h["at"].as_str().unwrap_or(""),
                describe(&h["input"]),
                h["ignored"].as_str().map(|i| format!("ignored: {i}")).unwrap_or_default()
            );
        }
        Ok(())
    }

    pub async fn list(&self, args: &ListArgs) -> anyhow::Result<()> {
        let limit = args.limit.to_string();
        let query: Vec<(&str, &str)> = [
            ("limit", Some(limit.as_str())),
            ("state", args.state.as_deref()),
            ("reason", args.reason.as_deref()),
            ("userId", args.user.as_deref()),
            ("since", args.since.as_deref()),
            ("until", args.until.as_deref()),
            ("after", args.after.as_deref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
        // reqwest percent-encodes every value.
        let page = self.call(self.http.get(format!("{}/orders", self.base)).query(&query)).await?;
        if self.printed_as_json(&page) {
            return Ok(());
        }
        println!("{:<38} {:<13} {:<18} {:>10}  CREATED", "ORDER", "STATE", "REASON", "AMOUNT");
        for o in page["orders"].as_array().into_iter().flatten() {
            let amount =
                o["amountCents"].as_u64().map(|a| format!("{}.{:02}", a / 100, a % 100)).unwrap_or_default();
            println!(
                "{:<38} {:<13} {:<18} {:>10}  {}",
                o["orderId"].as_str().unwrap_or(""),
                o["state"].as_str().unwrap_or(""),
                o["reason"].as_str().unwrap_or("-"),
                amount,
                o["createdAt"].as_str().unwrap_or("")
            );
        }
        if let Some(next) = page["next"].as_str() {
            println!("(more: --after {next})");
        }
        Ok(())
    }

    /// Prints each change from `GET /orders/stream` as it comes: a line each, or the change's
    /// JSON with `-o json`. Server-Sent Events are read as the spec frames them: events end
    /// with a blank line, and only `data:` lines carry the change.
    pub async fn watch(
        &self,
        order_id: Option<&str>,
        state: Option<&str>,
        after: Option<&str>,
    ) -> anyhow::Result<()> {
        let query: Vec<(&str, &str)> = [("orderId", order_id), ("state", state), ("after", after)]
            .into_iter()
            .filter_map(|(n, v)| Some((n, v?)))
            .collect();
        let mut response =
            self.send(self.http.get(format!("{}/orders/stream", self.base)).query(&query)).await?;
        let mut buffer = String::new();
        while let Some(chunk) = response.chunk().await? {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let kind =
                    event.lines().find_map(|l| l.strip_prefix("event:")).map(str::trim).unwrap_or("message");
                let data: String =
                    event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
                if data.is_empty() {
                    continue;
                }
                let change: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                if self.output == Output::Json {
                    println!("{}", serde_json::json!({ "event": kind, "data": change }));
                } else if kind == "change" {
                    println!(
                        "{:<26} {:<38} {:<13} {:<14} {}",
                        sagaflow_runtime::rfc3339(change["at"].as_u64().unwrap_or(0)),
                        change["orderId"].as_str().unwrap_or("?"),
                        change["state"].as_str().unwrap_or("?"),
                        change["step"]
                            .as_str()
                            .map(|s| format!("{s}/{}", change["phase"].as_str().unwrap_or("")))
                            .unwrap_or_default(),
                        change["reason"].as_str().unwrap_or("")
                    );
                } else {
                    println!("({kind}: {change})");
                }
            }
        }
        bail!("the orchestrator closed the stream")
    }

    /// Retries every order that is stuck now, page by page. A saga that is no longer stuck
    /// when its turn comes (it healed, or someone else retried it) is counted and skipped.
    pub async fn retry_all_stuck(&self) -> anyhow::Result<()> {
        let (mut retried, mut skipped, mut after) = (Vec::new(), 0, None::<String>);
        loop {
            let mut query = vec![("state", "stuck".to_owned()), ("limit", "1000".to_owned())];
            query.extend(after.clone().map(|a| ("after", a)));
            let page = self.call(self.http.get(format!("{}/orders", self.base)).query(&query)).await?;
            for id in page["orders"].as_array().into_iter().flatten().filter_map(|o| o["orderId"].as_str()) {
                match self.call(self.http.post(self.order_url(id, Some("retry"))?)).await {
                    Ok(_) => retried.push(id.to_owned()),
                    Err(_) => skipped += 1,
                }
            }
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => break,
            }
        }
        let summary = serde_json::json!({ "retried": retried, "skipped": skipped });
        if !self.printed_as_json(&summary) {
            println!("retried {} stuck orders ({skipped} no longer stuck)", retried.len());
        }
        Ok(())
    }

    pub async fn action(&self, order_id: &str, action: &str) -> anyhow::Result<()> {
        let o = self.call(self.http.post(self.order_url(order_id, Some(action))?)).await?;
        if self.printed_as_json(&o) {
            return Ok(());
        }
        println!("{action}: order {} is {}", order_id, o["state"].as_str().unwrap_or("?"));
        Ok(())
    }
}

fn reason(o: &Value) -> String {
    o["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default()
}

/// One history input in a few words: `reply payment action #2: success`.
fn describe(input: &Value) -> String {
    let kind = input["type"].as_str().unwrap_or("?");
    match kind {
        "reply" => format!(
            "reply {} {} #{}: {}{}",
            input["step"].as_str().unwrap_or("?"),
            input["phase"].as_str().unwrap_or("?"),
            input["attempt"],
            input["outcome"]["kind"].as_str().unwrap_or("?"),
            input["outcome"]["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default()
        ),
        "timerFired" => format!(
            "timer {} {} #{}: {}",
            input["timer"]["step"].as_str().unwrap_or("?"),
            input["timer"]["phase"].as_str().unwrap_or("?"),
            input["timer"]["attempt"],
            input["timer"]["kind"].as_str().unwrap_or("?")
        ),
        "cancel" => format!("cancel ({})", input["reason"].as_str().unwrap_or("")),
        other => other.to_owned(),
    }
}

/// `sagactl list`: the filters of `GET /orders`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// running, compensating, completed, compensated or stuck.
    #[arg(long)]
    pub state: Option<String>,
    /// Why a saga ended as it did: payment_declined, out_of_stock, cancelled, timed_out, ...
    #[arg(long)]
    pub reason: Option<String>,
    /// Only this customer's orders.
    #[arg(long)]
    pub user: Option<String>,
    /// Created at or after: RFC 3339 (2026-11-26T10:00:00Z) or epoch milliseconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Created before: RFC 3339 or epoch milliseconds.
    #[arg(long)]
    pub until: Option<String>,
    /// Go on from a previous page's cursor.
    #[arg(long)]
    pub after: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}
