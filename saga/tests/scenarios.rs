//! Worked examples of the state machine, one behaviour each. They read as documentation; the
//! property tests in `properties.rs` cover the same ground with generated schedules.
//! The `regression_*` tests pin down bugs that a property or a review found.

use sagaflow_saga::{
    CommandStatus, Compensation, Effect, HistoryEntry, Ignored, Input, Millis, Outcome, Phase, RetryPolicy,
    Saga, SagaDefinition, SagaEvent, Status, StepDefinition, Timer, TimerKind, Timestamp,
};

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempt_timeout: Millis(1_000),
        max_attempts: Some(max_attempts),
        backoff_initial: Millis(100),
        backoff_max: Millis(1_000),
    }
}

/// payment and inventory can be undone; notification cannot.
fn order_saga() -> SagaDefinition {
    let compensable = |name: &str, action: &str, undo: &str| StepDefinition {
        name: name.into(),
        action: action.into(),
        retry: policy(3),
        compensation: Some(Compensation { command: undo.into(), retry: policy(2) }),
    };
    SagaDefinition::new(vec![
        compensable("payment", "chargePayment", "refundPayment"),
        compensable("inventory", "reserveStock", "releaseStock"),
        StepDefinition {
            name: "notification".into(),
            action: "sendNotification".into(),
            retry: policy(3),
            compensation: None,
        },
    ])
    .unwrap()
}

fn sent(effects: &[Effect]) -> Vec<(u32, Phase, u32)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { command } => Some((command.step, command.phase, command.attempt)),
            _ => None,
        })
        .collect()
}

fn reply(step: u32, phase: Phase, attempt: u32, outcome: Outcome) -> Input {
    Input::Reply { step, phase, attempt, outcome }
}

fn ok(step: u32, phase: Phase, attempt: u32) -> Input {
    reply(step, phase, attempt, Outcome::Success)
}

struct Run {
    definition: SagaDefinition,
    saga: Saga,
    now: Timestamp,
    /// Every input given, as the shell records it.
    history: Vec<HistoryEntry>,
}

impl Run {
    fn start() -> (Self, Vec<Effect>) {
        let definition = order_saga();
        let saga = Saga::new("order-1", &definition, 42);
        let mut run = Self { definition, saga, now: Timestamp(0), history: Vec::new() };
        let effects = run.apply_at(Input::Start, Timestamp(0));
        (run, effects)
    }

    fn apply_at(&mut self, input: Input, at: Timestamp) -> Vec<Effect> {
        let applied = self.saga.apply(&self.definition, &input, at);
        self.history.push(HistoryEntry { at, input, ignored: applied.ignored });
        applied.effects
    }

    fn give(&mut self, input: Input) -> Vec<Effect> {
        self.now = Timestamp(self.now.0 + 1);
        self.apply_at(input, self.now)
    }

    /// Fires the armed timer at its due time.
    fn fire(&mut self) -> Vec<Effect> {
        let (timer, at) = self.saga.timer().expect("a timer is armed");
        self.now = at;
        self.apply_at(Input::TimerFired { timer }, at)
    }

    fn last_ignored(&self) -> Option<Ignored> {
        self.history.last().unwrap().ignored
    }
}

#[test]
fn happy_path_runs_every_step_in_order_and_completes() {
    let (mut run, effects) = Run::start();
    assert_eq!(sent(&effects), [(0, Phase::Action, 1)]);
    assert_eq!(sent(&run.give(ok(0, Phase::Action, 1))), [(1, Phase::Action, 1)]);
    assert_eq!(sent(&run.give(ok(1, Phase::Action, 1))), [(2, Phase::Action, 1)]);
    let last = run.give(ok(2, Phase::Action, 1));
    assert!(last.contains(&Effect::Finished { status: Status::Completed }));
    assert_eq!(run.saga.status(), Status::Completed);
    assert!(run.saga.timer().is_none());
}

#[test]
fn idempotency_key_is_shared_by_retries_and_differs_for_the_compensation() {
    let (mut run, first) = Run::start();
    run.fire(); // attempt 1 times out, backoff armed
    let second = run.fire(); // backoff over, attempt 2 sent
    let key = |effects: &[Effect]| {
        effects
            .iter()
            .find_map(|e| match e {
                Effect::Send { command } => Some(command.idempotency_key.clone()),
                _ => None,
            })
            .expect("a command was sent")
    };
    assert_eq!(key(&first), key(&second));
    assert_eq!(key(&first), "order-1/payment/action");
    let undo = run.give(Input::Cancel { reason: "cancelled".into() });
    assert_eq!(key(&undo), "order-1/payment/compensation");
}

#[test]
fn payment_declined_compensates_nothing() {
    let (mut run, _) = Run::start();
    let effects =
        run.give(reply(0, Phase::Action, 1, Outcome::Failure { reason: "payment_declined".into() }));
    assert!(sent(&effects).is_empty(), "no refund for a charge that never happened");
    assert_eq!(run.saga.status(), Status::Compensated);
    assert_eq!(run.saga.reason(), Some("payment_declined"));
}

#[test]
fn out_of_stock_refunds_the_payment() {
    let (mut run, _) = Run::start();
    run.give(ok(0, Phase::Action, 1));
    let effects = run.give(reply(1, Phase::Action, 1, Outcome::Failure { reason: "out_of_stock".into() }));
    assert_eq!(sent(&effects), [(0, Phase::Compensation, 1)]);
    run.give(ok(0, Phase::Compensation, 1));
    assert_eq!(run.saga.status(), Status::Compensated);
    assert_eq!(run.saga.reason(), Some("out_of_stock"));
}

#[test]
fn a_silent_participant_is_retried_then_its_possible_effect_is_undone() {
    let (mut run, _) = Run::start();
    run.give(ok(0, Phase::Action, 1));
    // Inventory never answers: 3 attempts, with backoff between them.
    let mut attempts = vec![];
    for _ in 0..5 {
        attempts.extend(sent(&run.fire()));
    }
    assert_eq!(attempts, [(1, Phase::Action, 2), (1, Phase::Action, 3), (1, Phase::Compensation, 1)]);
    assert_eq!(run.saga.reason(), Some("timed_out"));
    // Inventory's release first (it may have reserved), then the refund.
    assert_eq!(sent(&run.give(ok(1, Phase::Compensation, 1))), [(0, Phase::Compensation, 1)]);
    run.give(ok(0, Phase::Compensation, 1));
    assert_eq!(run.saga.status(), Status::Compensated);
}

#[test]
fn duplicate_and_stale_replies_change_nothing() {
    let (mut run, _) = Run::start();
    run.fire();
    run.fire(); // attempt 2 of payment in flight
    let before = run.saga.clone();
    assert!(run.give(ok(0, Phase::Action, 1)).is_empty());
    assert_eq!(run.last_ignored(), Some(Ignored::StaleAttempt));
    assert!(run.give(ok(1, Phase::Action, 2)).is_empty());
    assert_eq!(run.last_ignored(), Some(Ignored::NotAwaited));
    assert!(run.give(ok(9, Phase::Action, 2)).is_empty());
    assert_eq!(run.last_ignored(), Some(Ignored::UnknownStep));
    assert_eq!(run.saga, before, "ignored replies moved nothing");
    run.give(ok(0, Phase::Action, 2));
    assert!(run.give(ok(0, Phase::Action, 2)).is_empty(), "a duplicate of an applied reply");
    assert_eq!(run.last_ignored(), Some(Ignored::NotAwaited));
}

#[test]
fn a_late_timer_after_the_reply_is_ignored() {
    let (mut run, _) = Run::start();
    let (timer, at) = run.saga.timer().unwrap();
    run.give(ok(0, Phase::Action, 1));
    run.now = at;
    assert!(run.apply_at(Input::TimerFired { timer }, at).is_empty());
    assert_eq!(run.last_ignored(), Some(Ignored::StaleTimer));
}

#[test]
fn cancel_mid_flight_compensates_the_step_in_flight_too() {
    let (mut run, _) = Run::start();
    run.give(ok(0, Phase::Action, 1)); // inventory reservation now in flight
    let effects = run.give(Input::Cancel { reason: "cancelled".into() });
    // The reservation may have happened: release it first, then refund.
    assert_eq!(sent(&effects), [(1, Phase::Compensation, 1)]);
    run.give(ok(1, Phase::Compensation, 1));
    run.give(ok(0, Phase::Compensation, 1));
    assert_eq!(run.saga.status(), Status::Compensated);
    assert_eq!(run.saga.reason(), Some("cancelled"));
    // The reservation's late reply is a leftover.
    assert!(run.give(ok(1, Phase::Action, 1)).is_empty());
}

#[test]
fn cancel_past_the_point_of_no_return_is_refused() {
    let (mut run, _) = Run::start();
    run.give(ok(0, Phase::Action, 1));
    run.give(ok(1, Phase::Action, 1)); // notification sent: no way back
    assert!(!run.saga.can_cancel(&run.definition));
    assert!(run.give(Input::Cancel { reason: "cancelled".into() }).is_empty());
    assert_eq!(run.last_ignored(), Some(Ignored::PastPointOfNoReturn));
    assert_eq!(run.saga.status(), Status::Running);
}

#[test]
fn the_point_of_no_return_is_retried_for_ever() {
    let (mut run, _) = Run::start();
    run.give(ok(0, Phase::Action, 1));
    run.give(ok(1, Phase::Action, 1));
    for _ in 0..20 {
        run.fire();
    }
    assert_eq!(run.saga.status(), Status::Running);
    assert!(run.saga.steps()[2].action().attempts() > 3, "notification outlives its max_attempts");
}

#[test]
fn a_failing_compensation_gets_stuck_and_an_operator_retry_resumes_it() {
    let (mut run, _) = Run::start();
    run.give(ok(0, Phase::Action, 1));
    run.give(reply(1, Phase::Action, 1, Outcome::Failure { reason: "out_of_stock".into() }));
    let down = || Outcome::Transient { reason: "payment provider down".into() };
    run.give(reply(0, Phase::Compensation, 1, down()));
    run.fire(); // backoff over: attempt 2
    let effects = run.give(reply(0, Phase::Compensation, 2, down()));
    assert!(effects
        .contains(&Effect::Publish { event: SagaEvent::Stuck { step: 0, phase: Phase::Compensation } }));
    assert_eq!(run.saga.status(), Status::Stuck);
    assert!(run.saga.timer().is_none(), "stuck means waiting for a person, not a timer");
    assert_eq!(run.saga.steps()[0].compensation().last_error(), Some("payment provider down"));

    let effects = run.give(Input::Retry);
    assert_eq!(sent(&effects), [(0, Phase::Compensation, 3)]);
    run.give(ok(0, Phase::Compensation, 3));
    assert_eq!(run.saga.status(), Status::Compensated);
    assert_eq!(run.saga.reason(), Some("out_of_stock"));
}

#[test]
fn a_timer_is_never_fired_early() {
    let (mut run, _) = Run::start();
    let (timer, at) = run.saga.timer().unwrap();
    let early = Timestamp(at.0 - 1);
    assert!(run.apply_at(Input::TimerFired { timer }, early).is_empty());
    assert_eq!(run.last_ignored(), Some(Ignored::NotDue));
    assert_eq!(timer, Timer { step: 0, phase: Phase::Action, attempt: 1, kind: TimerKind::AttemptTimeout });
}

/// Found while designing the properties: after a timeout the saga backs off, and a duplicated
/// transient failure of that same attempt used to count as a second failed attempt.
#[test]
fn regression_duplicate_transient_reply_during_backoff_counts_once() {
    let (mut run, _) = Run::start();
    let busy = || reply(0, Phase::Action, 1, Outcome::Transient { reason: "busy".into() });
    run.give(busy());
    let backing_off = run.saga.clone();
    assert!(run.give(busy()).is_empty());
    assert_eq!(run.saga, backing_off);
}

/// A definite answer to the attempt that timed out is still news while backing off.
#[test]
fn regression_success_for_a_timed_out_attempt_is_used_while_backing_off() {
    let (mut run, _) = Run::start();
    run.fire(); // attempt 1 timed out; backing off before attempt 2
    let effects = run.give(ok(0, Phase::Action, 1));
    assert_eq!(sent(&effects), [(1, Phase::Action, 1)]);
}

#[test]
fn the_history_replays_into_the_same_saga() {
    let (mut run, _) = Run::start();
    run.give(ok(0, Phase::Action, 1));
    run.fire();
    run.give(ok(0, Phase::Action, 1));
    run.give(Input::Cancel { reason: "cancelled".into() });
    let replayed = Saga::replay("order-1", &run.definition, 42, &run.history);
    assert_eq!(replayed, run.saga);
    let json = serde_json::to_string(&run.saga).unwrap();
    assert_eq!(serde_json::from_str::<Saga>(&json).unwrap(), run.saga);
}

/// Found by the hostile test of a 100 s inventory freeze: the release went through on an early
/// attempt, the answers came after the saga gave up and was `stuck`, and stayed ignored as
/// stale. The barrier answers every attempt of a compensation alike, so a late success settles.
#[test]
fn regression_a_late_compensation_success_settles_a_stuck_saga() {
    let (mut run, _) = Run::start();
    run.give(ok(0, Phase::Action, 1));
    run.give(reply(1, Phase::Action, 1, Outcome::Failure { reason: "out_of_stock".into() }));
    // The refund's two attempts time out: stuck.
    run.fire();
    run.fire();
    run.fire();
    assert_eq!(run.saga.status(), Status::Stuck);
    assert_eq!(run.saga.steps()[0].compensation().status(), &CommandStatus::Exhausted);
    // The answer to attempt 1 arrives at last.
    let effects = run.give(ok(0, Phase::Compensation, 1));
    assert_eq!(run.last_ignored(), None);
    assert!(effects.contains(&Effect::Finished { status: Status::Compensated }), "{effects:?}");
    assert_eq!(run.saga.reason(), Some("out_of_stock"));
    assert!(run.saga.timer().is_none());
}

#[test]
fn a_late_compensation_success_while_a_later_attempt_waits_moves_on() {
    let (mut run, _) = Run::start();
    run.give(ok(0, Phase::Action, 1));
    run.give(reply(1, Phase::Action, 1, Outcome::Failure { reason: "out_of_stock".into() }));
    run.fire(); // refund attempt 1 timed out
    run.fire(); // refund attempt 2 sent
    let effects = run.give(ok(0, Phase::Compensation, 1));
    assert!(effects.contains(&Effect::Finished { status: Status::Compensated }), "{effects:?}");
    // The answer to attempt 2 comes too, and changes nothing.
    assert!(run.give(ok(0, Phase::Compensation, 2)).is_empty());
    assert_eq!(run.last_ignored(), Some(Ignored::Finished));
}

#[test]
fn a_compensation_success_for_an_attempt_never_sent_is_ignored() {
    let (mut run, _) = Run::start();
    run.give(ok(0, Phase::Action, 1));
    run.give(reply(1, Phase::Action, 1, Outcome::Failure { reason: "out_of_stock".into() }));
    let before = run.saga.clone();
    for attempt in [0, 2, 99] {
        assert!(run.give(ok(0, Phase::Compensation, attempt)).is_empty());
        assert_eq!(run.last_ignored(), Some(Ignored::StaleAttempt));
    }
    assert_eq!(run.saga, before);
}
