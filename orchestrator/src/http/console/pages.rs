//! The console's pages and the fragments htmx reloads, as maud templates. Every value is
//! escaped by maud; nothing from a saga or a dead letter reaches the page as markup.

use axum::http::StatusCode;
use maud::{html, Markup, DOCTYPE};
use sagaflow_api as api;

use super::{chart, SagaFilters};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Overview,
    Sagas,
    DeadLetters,
    None,
}

/// The frame of every page. `stream` is what the page follows for live updates.
fn layout(title: &str, here: Nav, stream: Option<&str>, body: Markup) -> Markup {
    let link = |nav: Nav, href: &str, text: &str| {
        html! { a href=(href) class=[(nav == here).then_some("here")] { (text) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · sagaflow" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body data-stream=[stream] {
                header.top {
                    span.brand { "sagaflow" }
                    nav {
                        (link(Nav::Overview, "/", "Overview"))
                        (link(Nav::Sagas, "/console/sagas", "Sagas"))
                        (link(Nav::DeadLetters, "/console/dead-letters", "Dead letters"))
                        a href="/openapi.json" { "API" }
                    }
                    @if stream.is_some() { span #live .live.off { "connecting" } }
                }
                main { (body) }
                script src="/console/assets/htmx.min.js" {}
                script src="/console/assets/console.js" {}
            }
        }
    }
}

pub fn error(status: StatusCode, message: &str) -> Markup {
    layout(
        "error",
        Nav::None,
        None,
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error { (message) }
            p { a href="/" { "Back to the overview" } }
        },
    )
}

fn badge(text: &str) -> Markup {
    html! { span class=(format!("badge s-{text}")) { (text) } }
}

fn money(cents: Option<u64>) -> String {
    cents.map(|c| format!("{}.{:02}", c / 100, c % 100)).unwrap_or_else(|| "–".into())
}

/// A saga's page. A defined saga's key holds a `/`, sent encoded so that it stays one segment.
fn saga_link(key: &str) -> String {
    format!("/console/sagas/{}", super::encode(key))
}

/// Where the API takes `action` (cancel, retry) for this saga: `/orders/...` for an order,
/// `/sagas/{saga}/{id}/...` for a defined saga.
fn action_url(d: &api::OrderDetail, action: &str) -> String {
    match d.order_id.split_once('/') {
        Some((saga, id)) => format!("/sagas/{}/{}/{action}", super::encode(saga), super::encode(id)),
        None => format!("/orders/{}/{action}", super::encode(&d.order_id)),
    }
}

/// "Order o-1", or "trip b-1" for a defined saga.
fn title_of(d: &api::OrderDetail) -> (String, String) {
    match d.order_id.split_once('/') {
        Some((saga, id)) => (format!("Saga {saga}"), id.to_owned()),
        None => ("Order".to_owned(), d.order_id.clone()),
    }
}

pub fn overview_page(o: &api::Overview) -> Markup {
    layout(
        "Overview",
        Nav::Overview,
        Some("/orders/stream"),
        html! {
            h1 { "Overview" }
            div #overview data-live hx-get="/console/fragments/overview" hx-trigger="refresh, every 5s" {
                (overview(o))
            }
        },
    )
}

pub fn overview(o: &api::Overview) -> Markup {
    let stuck = o.states.iter().find(|c| c.name == "stuck").map_or(0, |c| c.count);
    html! {
        div.cards {
            @for c in &o.states {
                a.card href=(format!("/console/sagas?state={}", c.name)) data-state=(c.name) {
                    div.n { (c.count) }
                    div.l { (badge(&c.name)) }
                }
            }
        }
        @if stuck > 0 {
            div.actions {
                button.danger data-action="retry every stuck saga" hx-post="/console/actions/retry-stuck" hx-swap="none"
                    hx-confirm=(format!("Retry the compensations of all {stuck} stuck sagas?")) {
                    "Retry all " (stuck) " stuck sagas"
                }
            }
        }
        div.grid {
            section.panel {
                h2 { "Sagas ended per second" }
                (chart::throughput(&o.throughput))
            }
            section.panel {
                h2 { "Latency" }
                (chart::latency(&o.throughput))
            }
        }
        div.grid {
            section.panel {
                h2 { "Health" }
                dl.facts {
                    dt { "broker" } dd { (badge(&o.bus)) }
                    dt { "store" } dd { (badge(if o.store == "working" { "working" } else { "failing" })) @if o.store != "working" { " " span.error { (o.store) } } }
                    dt { "outbox" } dd { (o.outbox_depth) " waiting to be published" }
                    dt { "parked" } dd { a href="/outbox/parked" { (o.parked) } " refused by the broker" }
                    dt { "dead letters" } dd {
                        @match o.dead_letters {
                            Some(n) => { a href="/console/dead-letters" { (n) } " in the queue" }
                            None => { span.muted { "the broker cannot be asked" } }
                        }
                    }
                }
                table {
                    thead { tr { th { "participant" } th {} th { "command queue" } th.num { "consumers" } th.num { "waiting" } } }
                    tbody {
                        @for p in &o.participants {
                            tr data-participant=(p.name) {
                                td { (p.name) }
                                td { @if p.consumers == 0 { (badge("down")) } @else { (badge("ok")) } }
                                td.mono { (p.queue) }
                                td.num { (p.consumers) }
                                td.num { (p.ready) }
                            }
                        }
                    }
                }
            }
            section.panel {
                h2 { "How sagas ended, last 10 minutes" }
                @if o.reasons.is_empty() {
                    p.muted { "None yet." }
                } @else {
                    table {
                        tbody {
                            @for r in &o.reasons {
                                tr {
                                    td { @if r.name == "completed" { (badge("completed")) } @else { a href=(format!("/console/sagas?reason={}", super::encode(&r.name))) { (r.name) } } }
                                    td.num { (r.count) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn sagas_page(filters: &SagaFilters, page: &api::OrderPage) -> Markup {
    let states = ["", "running", "compensating", "completed", "compensated", "stuck"];
    layout(
        "Sagas",
        Nav::Sagas,
        Some("/orders/stream"),
        html! {
            h1 { "Sagas" }
            form.filters method="get" action="/console/sagas" {
                label { "state" select name="state" {
                    @for s in states {
                        option value=(s) selected[filters.state == s] { @if s.is_empty() { "any" } @else { (s) } }
                    }
                } }
                label { "reason" input name="reason" value=(filters.reason) placeholder="payment_declined" size="16"; }
                label { "user" input name="userId" value=(filters.user_id) size="12"; }
                label { "since" input name="since" value=(filters.since) placeholder="2026-11-26T10:00:00Z" size="20"; }
                label { "until" input name="until" value=(filters.until) size="20"; }
                label { "saga" input name="saga" value=(filters.saga) placeholder="order" size="8"; }
                label { "id" input name="orderId" value=(filters.order_id) placeholder="o-1 or trip/b-1" size="20"; }
                button type="submit" { "Filter" }
                a href="/console/sagas" { "clear" }
            }
            div #sagas data-live hx-get=(format!("/console/fragments/sagas?{}{}", filters.encoded(), after(filters))) hx-trigger="refresh" {
                (saga_rows(filters, page))
            }
        },
    )
}

fn after(filters: &SagaFilters) -> String {
    if filters.after.trim().is_empty() {
        String::new()
    } else {
        format!("&after={}", super::encode(filters.after.trim()))
    }
}

pub fn saga_rows(filters: &SagaFilters, page: &api::OrderPage) -> Markup {
    html! {
        table {
            thead { tr { th { "id" } th { "saga" } th { "state" } th { "reason" } th { "user" } th.num { "amount" } th { "created" } th { "updated" } } }
            tbody {
                @for o in &page.orders {
                    tr data-order=(o.order_id) data-state=(o.state) {
                        td.mono { a href=(saga_link(&o.order_id)) { (o.order_id) } }
                        td { (o.saga) }
                        td { (badge(o.state.as_str())) }
                        td { (o.reason.as_deref().unwrap_or("")) }
                        td { (o.user_id.as_deref().unwrap_or("")) }
                        td.num { (money(o.amount_cents)) }
                        td.mono { (o.created_at) }
                        td.mono { (o.updated_at) }
                    }
                }
                @if page.orders.is_empty() {
                    tr { td colspan="8" .muted { "No saga matches." } }
                }
            }
        }
        div.pager {
            @if !filters.after.trim().is_empty() { a href={ "/console/sagas?" (filters.encoded()) } { "« newest" } " " }
            @if let Some(next) = &page.next {
                a href={ "/console/sagas?" (filters.encoded()) "&after=" (next) } { "older »" }
            }
        }
    }
}

pub fn saga_page(d: &api::OrderDetail) -> Markup {
    let stream = format!("/orders/stream?orderId={}", super::encode(&d.order_id));
    let (kind, id) = title_of(d);
    layout(
        &format!("{kind} {id}"),
        Nav::Sagas,
        Some(&stream),
        html! {
            h1 { (kind) " " span.mono { (id) } }
            div #saga data-live hx-get=(format!("/console/fragments/sagas/{}", super::encode(&d.order_id))) hx-trigger="refresh" {
                (saga(d))
            }
        },
    )
}

pub fn saga(d: &api::OrderDetail) -> Markup {
    let id = &d.order_id;
    html! {
        div.actions data-state=(d.state) {
            (badge(d.state.as_str()))
            @if let Some(reason) = &d.reason { span.muted { (reason) } }
            @if d.state == api::SagaState::Running {
                button.danger data-action="cancel" hx-post=(action_url(d, "cancel")) hx-swap="none"
                    hx-confirm=(format!("Cancel {id}? What was done will be undone: {}.", plan_text(d))) { "Cancel" }
            }
            @if d.state == api::SagaState::Stuck {
                button data-action="retry" hx-post=(action_url(d, "retry")) hx-swap="none"
                    hx-confirm=(format!("Retry the stuck commands of {id}?")) { "Retry" }
            }
        }
        div.grid {
            section.panel {
                h2 { (title_of(d).0) }
                dl.facts {
                    @if d.input.is_none() {
                        dt { "user" } dd { (d.user_id.as_deref().unwrap_or("–")) }
                        dt { "amount" } dd { (money(d.amount_cents)) }
                    }
                    dt { "created" } dd.mono { (d.created_at) }
                    dt { "updated" } dd.mono { (d.updated_at) }
                    @if let Some(f) = &d.finished_at { dt { "finished" } dd.mono { (f) " (" (d.duration_ms.unwrap_or(0)) " ms)" } }
                    dt { "saga id" } dd.mono { (d.saga_id) }
                    dt { "definition" } dd.mono {
                        (d.definition.name.as_deref().unwrap_or("?")) " v" (d.definition.version.map_or("?".to_owned(), |v| v.to_string()))
                        " (" (d.definition.fingerprint) ")"
                    }
                    dt { "trace id" } dd.mono data-trace { (d.trace_id) }
                    @if let Some(p) = &d.payment_id { dt { "payment" } dd.mono { (p) } }
                    @if let Some(i) = &d.invalid { dt { "invalid" } dd.error { (i) } }
                }
                @if let Some(input) = &d.input {
                    h3 { "input" }
                    pre.mono data-input { (serde_json::to_string_pretty(input).unwrap_or_default()) }
                }
                @if let Some(results) = d.results.as_ref().filter(|r| !r.is_empty()) {
                    h3 { "step results" }
                    pre.mono data-results { (serde_json::to_string_pretty(results).unwrap_or_default()) }
                }
                @if let Some(items) = &d.items {
                    table {
                        thead { tr { th { "product" } th.num { "qty" } th.num { "unit price" } } }
                        tbody {
                            @for i in items {
                                tr { td.mono { (i.product_id) } td.num { (i.quantity) } td.num { (money(Some(i.unit_price_cents))) } }
                            }
                        }
                    }
                }
            }
            section.panel {
                h2 { "Compensation plan" }
                @if d.compensation_plan.is_empty() {
                    p.muted { "Nothing to undo." }
                } @else {
                    p.muted {
                        @match d.state {
                            api::SagaState::Running => "If it compensated now, in this order:",
                            api::SagaState::Compensating | api::SagaState::Stuck => "Being undone, in this order:",
                            _ => "Undone, in this order:",
                        }
                    }
                    ol.plan {
                        @for step in &d.compensation_plan {
                            li {
                                (step) " "
                                @if let Some(c) = d.steps.iter().find(|s| &s.name == step).and_then(|s| s.compensation.as_ref()) {
                                    (badge(&api::word(&c.state)))
                                }
                            }
                        }
                    }
                }
            }
        }
        section.panel {
            h2 { "Steps" }
            table #steps {
                thead { tr { th { "step" } th { "state" } th.num { "attempts" } th { "compensation" } th.num { "attempts" } th { "last error" } } }
                tbody {
                    @for s in &d.steps {
                        tr data-step=(s.name) {
                            td { (s.name) }
                            td { (badge(&api::word(&s.state))) }
                            td.num { (s.attempts) }
                            @match &s.compensation {
                                Some(c) => { td { (badge(&api::word(&c.state))) } td.num { (c.attempts) } }
                                None => { td.muted { "none (point of no return)" } td.num { "–" } }
                            }
                            td.error { (s.compensation.as_ref().and_then(|c| c.last_error.as_deref()).or(s.last_error.as_deref()).unwrap_or("")) }
                        }
                    }
                }
            }
        }
        section.panel {
            h2 { "Timeline" }
            @if (d.history.len() as u32) < d.history_length {
                p.muted { "The newest " (d.history.len()) " of " (d.history_length) " entries." }
            }
            table #timeline {
                thead { tr { th { "time" } th { "what happened" } th { "outcome" } th { "note" } } }
                tbody {
                    @for h in &d.history {
                        tr class=[h.ignored.is_some().then_some("ignored")] {
                            td.mono { (h.at) }
                            td { (describe(&h.input)) }
                            td { (outcome(&h.input)) }
                            td.muted { @if let Some(i) = &h.ignored { "ignored: " (i) } }
                        }
                    }
                }
            }
        }
    }
}

fn plan_text(d: &api::OrderDetail) -> String {
    if d.compensation_plan.is_empty() {
        "nothing".into()
    } else {
        d.compensation_plan.join(", then ")
    }
}

fn phase(p: api::Phase) -> &'static str {
    match p {
        api::Phase::Action => "action",
        api::Phase::Compensation => "compensation",
    }
}

fn describe(input: &api::HistoryInput) -> String {
    match input {
        api::HistoryInput::Start => "placed: the first command is sent".into(),
        api::HistoryInput::Reply { step, phase: p, attempt, .. } => {
            format!("{step} {} replied to attempt #{attempt}", phase(*p))
        }
        api::HistoryInput::TimerFired { timer } => match timer.kind.as_str() {
            "backoff" => format!(
                "{} {}: backoff over, attempt #{} is sent",
                timer.step,
                phase(timer.phase),
                timer.attempt + 1
            ),
            _ => format!(
                "{} {}: no reply to attempt #{} in time",
                timer.step,
                phase(timer.phase),
                timer.attempt
            ),
        },
        api::HistoryInput::Cancel { reason } if reason == "cancelled" => "cancelled by a request".into(),
        api::HistoryInput::Cancel { reason } => format!("cancelled ({reason})"),
        api::HistoryInput::Retry => "an operator retried it".into(),
    }
}

fn outcome(input: &api::HistoryInput) -> Markup {
    match input {
        api::HistoryInput::Reply { outcome, .. } => match outcome {
            api::Outcome::Success => badge("success"),
            api::Outcome::Failure { reason } => html! { (badge("failure")) " " (reason) },
            api::Outcome::Transient { reason } => html! { (badge("transient")) " " (reason) },
        },
        api::HistoryInput::TimerFired { timer } if timer.kind != "backoff" => badge("timed_out"),
        _ => html! {},
    }
}

pub fn dead_letters_page(letters: Result<&api::DeadLetterPage, &String>) -> Markup {
    layout(
        "Dead letters",
        Nav::DeadLetters,
        None,
        html! {
            h1 { "Dead letters" }
            p.muted { "Messages no program could understand, with why and where they came from. Requeue sends one back to its queue as it first arrived; discard removes it for good." }
            div #dead-letters data-live hx-get="/console/fragments/dead-letters" hx-trigger="refresh, every 10s" {
                (dead_letters(letters))
            }
        },
    )
}

pub fn dead_letters(letters: Result<&api::DeadLetterPage, &String>) -> Markup {
    match letters {
        Err(e) => html! { p.error { "The broker cannot be asked: " (e) } },
        Ok(page) => html! {
            p { (page.total) " in the queue" @if (page.dead_letters.len() as u64) < page.total { ", the oldest " (page.dead_letters.len()) " shown" } "." }
            table {
                thead { tr { th { "message" } th { "reason" } th { "from queue" } th { "kind" } th.num { "bytes" } th { "body" } th {} } }
                tbody {
                    @for d in &page.dead_letters {
                        tr data-dead-letter=(d.id) {
                            td.mono { (d.id) @if let Some(c) = &d.correlation_id { br; span.muted { (c) } } }
                            td.error { (d.reason.as_deref().unwrap_or("")) }
                            td.mono { (d.queue.as_deref().unwrap_or("")) }
                            td { (d.kind.as_deref().unwrap_or("")) }
                            td.num { (d.bytes) }
                            td { pre.preview { (d.preview) } }
                            td {
                                @if !d.id.is_empty() {
                                    div.actions {
                                        @if d.queue.is_some() {
                                            button.quiet data-action="requeue" hx-post=(format!("/dead-letters/{}/requeue", super::encode(&d.id))) hx-swap="none"
                                                hx-confirm=(format!("Send {} back to {}?", d.id, d.queue.as_deref().unwrap_or(""))) { "Requeue" }
                                        }
                                        button.danger data-action="discard" hx-post=(format!("/dead-letters/{}/discard", super::encode(&d.id))) hx-swap="none"
                                            hx-confirm=(format!("Discard {} for good?", d.id)) { "Discard" }
                                    }
                                }
                            }
                        }
                    }
                    @if page.dead_letters.is_empty() { tr { td colspan="7" .muted { "The dead-letter queue is empty." } } }
                }
            }
        },
    }
}
