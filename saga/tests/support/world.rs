//! A simulated world around one saga: participants that behave like the real services (with
//! the idempotency barrier), a network that duplicates, reorders and loses messages, and the
//! timers the saga armed. Every input goes through [`World::apply`], which checks the saga's
//! invariants before and after it.

use proptest::prelude::*;
use sagaflow_saga::{
    Command, CommandStatus, Effect, HistoryEntry, Input, Outcome, Phase, Saga, SagaDefinition, Status, Timer,
    TimerKind, Timestamp,
};

/// How the participant of one step behaves. Failures are finite so that a fair schedule ends.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Refuse the action for good (a declined payment). Only for compensable steps: a step past
    /// the point of no return that is refused needs an operator, which `stuck` covers elsewhere.
    pub refuse_action: bool,
    /// Answer the action with a transient failure this many times first.
    pub action_hiccups: u32,
    /// Fail the compensation this many times before it works.
    pub compensation_failures: u32,
}

pub fn behaviours(definition: &SagaDefinition) -> impl Strategy<Value = Vec<Behaviour>> {
    let compensable: Vec<bool> = definition.steps().iter().map(|s| s.compensation.is_some()).collect();
    compensable
        .into_iter()
        .map(|c| {
            (
                prop::bool::weighted(if c { 0.25 } else { 0.0 }),
                0u32..=2,
                prop_oneof![3 => Just(0u32), 2 => 1u32..=6],
            )
                .prop_map(|(refuse_action, action_hiccups, compensation_failures)| Behaviour {
                    refuse_action,
                    action_hiccups,
                    compensation_failures,
                })
        })
        .collect::<Vec<_>>()
}

/// What one participant has recorded for its step: the barrier of the real services.
#[derive(Debug, Clone, Default)]
pub struct Participant {
    pub behaviour: Option<Behaviour>,
    /// The first answer to the action, repeated for every duplicate.
    pub action_answer: Option<Outcome>,
    /// True once the compensation ran (or ran as a null compensation).
    pub compensated: bool,
    /// True while the action's effect is in the world (applied and not undone).
    pub effect_present: bool,
    /// How many times the action's effect was applied: more than 1 would be a double charge.
    pub times_applied: u32,
}

impl Participant {
    fn handle(&mut self, command: &Command) -> Outcome {
        let behaviour = self.behaviour.as_mut().expect("behaviour set");
        match command.phase {
            Phase::Action => {
                if self.compensated {
                    // No hanging: an action after its compensation changes nothing.
                    return Outcome::Failure { reason: "already_compensated".into() };
                }
                if let Some(first) = &self.action_answer {
                    return first.clone();
                }
                if behaviour.action_hiccups > 0 {
                    behaviour.action_hiccups -= 1;
                    return Outcome::Transient { reason: "busy".into() };
                }
                let answer = if behaviour.refuse_action {
                    Outcome::Failure { reason: "declined".into() }
                } else {
                    self.effect_present = true;
                    self.times_applied += 1;
                    Outcome::Success
                };
                self.action_answer = Some(answer.clone());
                answer
            }
            Phase::Compensation => {
                if self.compensated {
                    return Outcome::Success;
                }
                if behaviour.compensation_failures > 0 {
                    behaviour.compensation_failures -= 1;
                    return Outcome::Transient { reason: "refund service down".into() };
                }
                // Undo if the action happened; otherwise record a null compensation, which
                // also bars a late action from ever applying.
                self.effect_present = false;
                self.compensated = true;
                Outcome::Success
            }
        }
    }
}

/// One move of an adversarial schedule.
#[derive(Debug, Clone)]
pub enum Move {
    /// Deliver the n-th command in flight to its participant; keep a copy if `duplicate`.
    DeliverCommand {
        n: usize,
        duplicate: bool,
    },
    LoseCommand {
        n: usize,
    },
    /// Deliver the n-th reply in flight to the saga; keep a copy if `duplicate`.
    DeliverReply {
        n: usize,
        duplicate: bool,
    },
    LoseReply {
        n: usize,
    },
    /// Fire the timer the saga armed, at its time.
    FireTimer,
    /// Fire any timer the saga ever armed, now: old ones must be ignored.
    FireOldTimer {
        n: usize,
    },
    Cancel,
    OperatorRetry,
    /// A reply no participant sent for the current attempts: must be ignored.
    BogusReply {
        step: u32,
        phase: Phase,
        attempt_offset: u32,
    },
    /// The orchestrator crashes and rebuilds the saga from its history.
    CrashAndReplay,
    Wait {
        ms: u64,
    },
}

pub fn moves(max: usize) -> impl Strategy<Value = Vec<Move>> {
    let phase = prop_oneof![Just(Phase::Action), Just(Phase::Compensation)];
    let one = prop_oneof![
        8 => (any::<usize>(), prop::bool::weighted(0.3)).prop_map(|(n, duplicate)| Move::DeliverCommand { n, duplicate }),
        1 => any::<usize>().prop_map(|n| Move::LoseCommand { n }),
        8 => (any::<usize>(), prop::bool::weighted(0.3)).prop_map(|(n, duplicate)| Move::DeliverReply { n, duplicate }),
        1 => any::<usize>().prop_map(|n| Move::LoseReply { n }),
        3 => Just(Move::FireTimer),
        1 => any::<usize>().prop_map(|n| Move::FireOldTimer { n }),
        1 => Just(Move::Cancel),
        1 => Just(Move::OperatorRetry),
        1 => (0u32..8, phase, 1u32..3).prop_map(|(step, phase, attempt_offset)| Move::BogusReply { step, phase, attempt_offset }),
        1 => Just(Move::CrashAndReplay),
        1 => (0u64..200).prop_map(|ms| Move::Wait { ms }),
    ];
    prop::collection::vec(one, 0..max)
}

/// The saga and everything around it.
pub struct World {
    pub definition: SagaDefinition,
    pub saga: Saga,
    pub now: Timestamp,
    pub participants: Vec<Participant>,
    /// Commands on their way to participants.
    pub commands: Vec<Command>,
    /// Replies on their way to the saga.
    pub replies: Vec<Input>,
    /// Every timer the saga ever armed.
    pub timers: Vec<(Timer, Timestamp)>,
    /// Every command the saga ever sent, in order.
    pub sent: Vec<Command>,
    /// Set once the saga first turned to compensation.
    pub compensation_began: bool,
    /// Inputs applied so far.
    pub inputs: usize,
    /// Every input given to the saga, as the shell records it, ignored ones included.
    pub history: Vec<HistoryEntry>,
}

impl World {
    pub fn new(definition: SagaDefinition, behaviours: Vec<Behaviour>, seed: u64) -> Self {
        let saga = Saga::new("saga-1", &definition, seed);
        let participants = behaviours
            .into_iter()
            .map(|b| Participant { behaviour: Some(b), ..Participant::default() })
            .collect();
        Self {
            definition,
            saga,
            now: Timestamp(1_000),
            participants,
            commands: Vec::new(),
            replies: Vec::new(),
            timers: Vec::new(),
            sent: Vec::new(),
            compensation_began: false,
            inputs: 0,
            history: Vec::new(),
        }
    }

    /// Applies an input, checks the invariants of the step and of the result, and routes effects.
    pub fn apply(&mut self, input: Input) -> Vec<Effect> {
        let before = self.saga.clone();
        let applied = self.saga.apply(&self.definition, &input, self.now);
        let effects = applied.effects;
        self.inputs += 1;
        self.history.push(HistoryEntry { at: self.now, input: input.clone(), ignored: applied.ignored });

        // Invariant 5: the same input again changes nothing and does nothing.
        let mut again = self.saga.clone();
        let repeated = again.apply(&self.definition, &input, self.now);
        assert!(repeated.effects.is_empty(), "applying {input:?} twice emitted {repeated:?}");
        assert!(repeated.ignored.is_some(), "applying {input:?} twice was not ignored");
        assert_eq!(again, self.saga, "applying {input:?} twice moved the saga");

        // An ignored input moves nothing.
        if applied.ignored.is_some() {
            assert!(effects.is_empty());
            assert_eq!(before, self.saga, "ignored input {input:?} moved the saga");
        }
        self.check_step(&before, &input, &effects);
        for effect in &effects {
            match effect {
                Effect::Send { command } => {
                    self.commands.push(command.clone());
                    self.sent.push(command.clone());
                }
                Effect::ArmTimer { timer, at } => self.timers.push((*timer, *at)),
                Effect::Publish { .. } | Effect::Finished { .. } => {}
            }
        }
        if self.saga.status() == Status::Compensating {
            self.compensation_began = true;
        }
        self.check_state();
        effects
    }

    pub fn start(&mut self) {
        self.apply(Input::Start);
    }

    pub fn deliver_command(&mut self, n: usize, duplicate: bool) {
        if self.commands.is_empty() {
            return;
        }
        let n = n % self.commands.len();
        let command = if duplicate { self.commands[n].clone() } else { self.commands.remove(n) };
        let outcome = self.participants[command.step as usize].handle(&command);
        self.replies.push(Input::Reply {
            step: command.step,
            phase: command.phase,
            attempt: command.attempt,
            outcome,
        });
    }

    pub fn deliver_reply(&mut self, n: usize, duplicate: bool) {
        if self.replies.is_empty() {
            return;
        }
        let n = n % self.replies.len();
        let reply = if duplicate { self.replies[n].clone() } else { self.replies.remove(n) };
        self.apply(reply);
    }

    pub fn fire_timer(&mut self) {
        if let Some((timer, at)) = self.saga.timer() {
            self.now = self.now.max(at);
            self.apply(Input::TimerFired { timer });
        }
    }

    pub fn play(&mut self, m: &Move) {
        match *m {
            Move::DeliverCommand { n, duplicate } => self.deliver_command(n, duplicate),
            Move::LoseCommand { n } => {
                if !self.commands.is_empty() {
                    let n = n % self.commands.len();
                    self.commands.remove(n);
                }
            }
            Move::DeliverReply { n, duplicate } => self.deliver_reply(n, duplicate),
            Move::LoseReply { n } => {
                if !self.replies.is_empty() {
                    let n = n % self.replies.len();
                    self.replies.remove(n);
                }
            }
            Move::FireTimer => self.fire_timer(),
            Move::FireOldTimer { n } => {
                if !self.timers.is_empty() {
                    let (timer, _) = self.timers[n % self.timers.len()];
                    self.apply(Input::TimerFired { timer });
                }
            }
            Move::Cancel => {
                let could = self.saga.can_cancel(&self.definition);
                let before = self.saga.status();
                self.apply(Input::Cancel { reason: "cancelled".into() });
                assert_eq!(
                    could,
                    self.saga.status() != before,
                    "can_cancel said {could} but cancel moved the saga from {before} to {}",
                    self.saga.status()
                );
            }
            Move::OperatorRetry => {
                self.apply(Input::Retry);
            }
            Move::BogusReply { step, phase, attempt_offset } => {
                let current =
                    self.saga.steps().get(step as usize).map(|s| s.progress(phase).attempts()).unwrap_or(0);
                // Never an attempt that was sent: either one not sent yet, or attempt 0.
                let attempt = if attempt_offset == 1 { 0 } else { current + attempt_offset };
                let before = self.saga.clone();
                self.apply(Input::Reply { step, phase, attempt, outcome: Outcome::Success });
                assert_eq!(before, self.saga, "a bogus reply moved the saga");
                assert!(self.history.last().unwrap().ignored.is_some());
            }
            Move::CrashAndReplay => {
                self.saga = self.replayed();
            }
            Move::Wait { ms } => self.now = Timestamp(self.now.0 + ms),
        }
    }

    /// Invariant 6: the saga rebuilt from its history, which must equal the live one whether
    /// the ignored inputs were recorded or only counted.
    pub fn replayed(&self) -> Saga {
        let (id, seed) = (self.saga.id(), self.saga.seed());
        let replayed = Saga::replay(id, &self.definition, seed, &self.history);
        assert_eq!(replayed, self.saga, "replaying the history does not rebuild the saga");
        let moved = self.history.iter().filter(|h| h.ignored.is_none());
        let from_moves = Saga::replay(id, &self.definition, seed, moved);
        assert_eq!(
            from_moves, self.saga,
            "replaying only the inputs that moved it does not rebuild the saga"
        );
        replayed
    }

    /// Answers everything fairly, oldest first, fires timers only when nothing is in flight, and
    /// plays the operator who retries a stuck saga. Returns the inputs it took to end.
    pub fn run_to_end(&mut self, limit: usize) -> usize {
        let start = self.inputs;
        while !self.saga.is_terminal() {
            assert!(
                self.inputs - start <= limit,
                "invariant 7: not terminal after {limit} inputs; saga: {:#?}",
                self.saga
            );
            if !self.replies.is_empty() {
                self.deliver_reply(0, false);
            } else if !self.commands.is_empty() {
                self.deliver_command(0, false);
            } else if self.saga.timer().is_some() {
                self.fire_timer();
            } else if self.saga.status() == Status::Stuck {
                self.apply(Input::Retry);
            } else if self.saga.status() == Status::NotStarted {
                self.apply(Input::Start);
            } else {
                panic!(
                    "the saga is {} with nothing in flight and no timer: it would hang silently",
                    self.saga.status()
                );
            }
        }
        self.inputs - start
    }

    /// Invariants of one step, comparing the saga before and after it.
    fn check_step(&self, before: &Saga, input: &Input, effects: &[Effect]) {
        // Invariant 1: a terminal state never changes.
        if before.is_terminal() {
            assert!(effects.is_empty(), "terminal saga emitted {effects:?} on {input:?}");
            assert_eq!(before, &self.saga, "terminal saga moved on {input:?}");
        }
        for effect in effects {
            let Effect::Send { command } = effect else { continue };
            let step = command.step as usize;
            match command.phase {
                Phase::Action => {
                    // Invariant 2: forward commands strictly in step order, none once compensating.
                    assert!(!self.compensation_began, "action {command:?} sent after compensation began");
                    assert_eq!(self.saga.status(), Status::Running);
                    let steps = self.saga.steps();
                    if step > 0 {
                        assert_eq!(
                            steps[step - 1].action().status(),
                            &CommandStatus::Succeeded,
                            "step {step} sent before step {} succeeded",
                            step - 1
                        );
                    }
                    assert!(
                        steps[step + 1..].iter().all(|s| s.action().attempts() == 0),
                        "step {step} sent after a later step"
                    );
                }
                Phase::Compensation => {
                    // Invariant 3: compensate only what may have happened, last step first.
                    assert!(self.definition.steps()[step].compensation.is_some());
                    assert!(
                        self.sent.iter().any(|c| c.step == command.step && c.phase == Phase::Action),
                        "compensating step {step} whose action was never sent"
                    );
                    let steps = self.saga.steps();
                    assert!(steps[step].action_may_have_happened());
                    for (later, s) in steps.iter().enumerate().skip(step + 1) {
                        if self.definition.steps()[later].compensation.is_some()
                            && s.action_may_have_happened()
                        {
                            assert_eq!(
                                s.compensation().status(),
                                &CommandStatus::Succeeded,
                                "compensating step {step} before later step {later} was compensated"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Invariants of any state.
    fn check_state(&self) {
        let saga = &self.saga;
        let pending: Vec<_> = saga
            .steps()
            .iter()
            .enumerate()
            .flat_map(|(i, s)| [(i, Phase::Action, s.action()), (i, Phase::Compensation, s.compensation())])
            .filter(|(_, _, p)| p.is_pending())
            .collect();
        match saga.status() {
            // A live saga always waits on exactly one command and has exactly its timer armed, so
            // it can never hang without saying so.
            Status::Running | Status::Compensating => {
                assert_eq!(pending.len(), 1, "a live saga must await exactly one command: {saga:#?}");
                let (step, phase, progress) = pending[0];
                let (timer, _) = saga.timer().expect("a live saga has a timer");
                let kind = match progress.status() {
                    CommandStatus::Waiting => TimerKind::AttemptTimeout,
                    _ => TimerKind::Backoff,
                };
                assert_eq!(timer, Timer { step: step as u32, phase, attempt: progress.attempts(), kind });
                let expected_phase =
                    if saga.status() == Status::Running { Phase::Action } else { Phase::Compensation };
                assert_eq!(phase, expected_phase);
            }
            Status::NotStarted | Status::Completed | Status::Compensated | Status::Stuck => {
                assert!(pending.is_empty(), "{} saga awaits {pending:?}", saga.status());
                assert!(saga.timer().is_none(), "{} saga has a timer", saga.status());
            }
        }
        // Invariant 4 and the world it stands for.
        match saga.status() {
            Status::Completed => {
                assert!(saga.steps().iter().all(|s| s.action().status() == &CommandStatus::Succeeded));
                assert!(saga.steps().iter().all(|s| s.compensation().attempts() == 0));
                assert!(
                    self.participants.iter().all(|p| p.effect_present),
                    "completed but an effect is missing"
                );
            }
            Status::Compensated => {
                for (i, s) in saga.steps().iter().enumerate() {
                    if s.action_may_have_happened() {
                        assert_eq!(
                            s.compensation().status(),
                            &CommandStatus::Succeeded,
                            "step {i} not compensated"
                        );
                    }
                }
                assert!(
                    self.participants.iter().all(|p| !p.effect_present),
                    "compensated but an effect remains: {:?}",
                    self.participants
                );
            }
            Status::Stuck => {
                let stuck_on = saga
                    .steps()
                    .iter()
                    .filter(|s| {
                        s.compensation().status() == &CommandStatus::Exhausted
                            || matches!(s.action().status(), CommandStatus::Failed { .. })
                    })
                    .count();
                assert!(stuck_on >= 1, "stuck without a failed command");
            }
            _ => {}
        }
        // Nothing is done twice, whatever the network did.
        assert!(self.participants.iter().all(|p| p.times_applied <= 1));
        // The history never forgets an input.
        assert_eq!(self.history.len(), self.inputs);
    }
}
