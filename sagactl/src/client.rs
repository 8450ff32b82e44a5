//! The orchestrator's HTTP API, for people: small tables instead of JSON.

use anyhow::{bail, Context};
use sagaflow_api::{self as api, word};
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

    /// The URL of one saga, `/orders/{id}[/{action}]` for an order or
    /// `/sagas/{saga}/{id}[/{action}]` for a defined saga's key `{saga}/{id}`, each part
    /// percent-encoded as one path segment (an id may hold `:` or `.`, and a typo must not
    /// reach another route).
    fn saga_url(&self, key: &str, action: Option<&str>) -> anyhow::Result<reqwest::Url> {
        let mut url =
            reqwest::Url::parse(&self.base).with_context(|| format!("{} is not a URL", self.base))?;
        let mut path =
            url.path_segments_mut().map_err(|()| anyhow::anyhow!("{} cannot be a base URL", self.base))?;
        path.pop_if_empty();
        match key.split_once('/') {
            Some((saga, id)) => path.push("sagas").push(saga).push(id),
            None => path.push("orders").push(key),
        };
        path.extend(action);
        drop(path);
        Ok(url)
    }

    /// Prints `body` as JSON and returns true when asked for JSON.
    fn printed_as_json(&self, body: &impl serde::Serialize) -> bool {
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
            let error = response.json::<api::ErrorBody>().await.map(|e| e.error);
            bail!("{status}: {}", error.as_deref().unwrap_or("no details"));
        }
        Ok(response)
    }

    /// Sends `request` and reads the answer as `T`: an answer of another shape is an error that
    /// says so, not a table of blanks.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = self.send(request).await?;
        let url = response.url().path().to_owned();
        response
            .json()
            .await
            .with_context(|| format!("the orchestrator's answer to {url} is not what this sagactl expects"))
    }

    pub async fn status(&self, order_id: &str) -> anyhow::Result<()> {
        let o: api::OrderDetail = self.call(self.http.get(self.saga_url(order_id, None)?)).await?;
        if self.printed_as_json(&o) {
            return Ok(());
        }
        println!("{:<7} {}", if o.saga == "order" { "order" } else { "key" }, o.order_id);
        println!("state   {}{}", o.state, reason(o.reason.as_deref()));
        if let Some(input) = &o.input {
            println!("input   {input}");
        }
        if let Some(results) = o.results.as_ref().filter(|r| !r.is_empty()) {
            println!("results {}", serde_json::to_string(results).unwrap_or_default());
        }
        if let Some(amount) = o.amount_cents {
            println!("amount  {}.{:02}", amount / 100, amount % 100);
        }
        println!("trace   {}", o.trace_id);
        let d = &o.definition;
        match (&d.name, d.version) {
            (Some(name), Some(version)) => println!("saga    {name} v{version} ({})", d.fingerprint),
            _ => println!("saga    {}", d.fingerprint),
        }
        if !o.compensation_plan.is_empty() {
            println!("undo    {}", o.compensation_plan.join(" → "));
        }
        println!(
            "\n{:<14} {:<20} {:>8}  {:<20} {:>8}  LAST ERROR",
            "STEP", "STATE", "ATTEMPTS", "COMPENSATION", "ATTEMPTS"
        );
        for s in &o.steps {
            let (cs, ca) = match &s.compensation {
                Some(c) => (word(&c.state), c.attempts.to_string()),
                None => ("(none)".to_owned(), "-".to_owned()),
            };
            // The compensation's error when it has one: it is the later of the two.
            let error =
                s.compensation.as_ref().and_then(|c| c.last_error.as_deref()).or(s.last_error.as_deref());
            println!(
                "{:<14} {:<20} {:>8}  {:<20} {:>8}  {}",
                s.name,
                word(&s.state),
                s.attempts,
                cs,
                ca,
                error.unwrap_or("-").chars().take(80).collect::<String>()
            );
        }
        println!("\n{:<26} {:<44} NOTE", "TIME", "INPUT");
        for h in &o.history {
            println!(
                "{:<26} {:<44} {}",
                h.at,
                describe(&h.input),
                h.ignored.as_deref().map(|i| format!("ignored: {i}")).unwrap_or_default()
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
            ("saga", args.saga.as_deref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
        // reqwest percent-encodes every value. /sagas lists every saga, orders included.
        let page: api::OrderPage =
            self.call(self.http.get(format!("{}/sagas", self.base)).query(&query)).await?;
        if self.printed_as_json(&page) {
            return Ok(());
        }
        println!("{:<38} {:<8} {:<13} {:<18} {:>10}  CREATED", "ID", "SAGA", "STATE", "REASON", "AMOUNT");
        for o in &page.orders {
            let amount = o.amount_cents.map(|a| format!("{}.{:02}", a / 100, a % 100)).unwrap_or_default();
            println!(
                "{:<38} {:<8} {:<13} {:<18} {:>10}  {}",
                o.order_id,
                o.saga,
                o.state,
                o.reason.as_deref().unwrap_or("-"),
                amount,
                o.created_at
            );
        }
        if let Some(next) = &page.next {
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
                if self.output == Output::Json {
                    let data: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                    println!("{}", serde_json::json!({ "event": kind, "data": data }));
                    continue;
                }
                match (kind, serde_json::from_str::<api::Change>(&data)) {
                    ("change", Ok(change)) => println!(
                        "{:<26} {:<38} {:<13} {:<14} {}",
                        sagaflow_runtime::rfc3339(change.at),
                        change.order_id,
                        change.state,
                        change
                            .step
                            .map(|s| format!("{s}/{}", change.phase.map(|p| word(&p)).unwrap_or_default()))
                            .unwrap_or_default(),
                        change.reason.unwrap_or_default()
                    ),
                    _ => println!("({kind}: {data})"),
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
            let page: api::OrderPage =
                self.call(self.http.get(format!("{}/sagas", self.base)).query(&query)).await?;
            for o in &page.orders {
                match self
                    .call::<api::Accepted>(self.http.post(self.saga_url(&o.order_id, Some("retry"))?))
                    .await
                {
                    Ok(_) => retried.push(o.order_id.clone()),
                    Err(_) => skipped += 1,
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let summary = serde_json::json!({ "retried": retried, "skipped": skipped });
        if !self.printed_as_json(&summary) {
            println!("retried {} stuck sagas ({skipped} no longer stuck)", retried.len());
        }
        Ok(())
    }

    pub async fn action(&self, order_id: &str, action: &str) -> anyhow::Result<()> {
        let o: api::Accepted = self.call(self.http.post(self.saga_url(order_id, Some(action))?)).await?;
        if self.printed_as_json(&o) {
            return Ok(());
        }
        println!("{action}: {} {} is {}", o.saga, o.order_id, o.state);
        Ok(())
    }
}

fn reason(reason: Option<&str>) -> String {
    reason.map(|r| format!(" ({r})")).unwrap_or_default()
}

/// One history input in a few words: `reply payment action #2: success`.
fn describe(input: &api::HistoryInput) -> String {
    match input {
        api::HistoryInput::Reply { step, phase, attempt, outcome } => {
            let (kind, why) = match outcome {
                api::Outcome::Success => ("success", None),
                api::Outcome::Failure { reason } => ("failure", Some(reason)),
                api::Outcome::Transient { reason } => ("transient", Some(reason)),
            };
            format!("reply {step} {} #{attempt}: {kind}{}", word(phase), reason(why.map(String::as_str)))
        }
        api::HistoryInput::TimerFired { timer } => {
            format!("timer {} {} #{}: {}", timer.step, word(&timer.phase), timer.attempt, timer.kind)
        }
        api::HistoryInput::Cancel { reason } => format!("cancel ({reason})"),
        api::HistoryInput::Start => "start".into(),
        api::HistoryInput::Retry => "retry".into(),
    }
}

/// `sagactl list`: the filters of `GET /sagas`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// Only sagas of this definition: order, or one loaded with --saga-file (trip, ...).
    #[arg(long)]
    pub saga: Option<String>,
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
