//! The transition function: the only code that changes a saga.
//!
//! Reading guide: [`Saga::apply`] dispatches on the input; each `on_*` method handles one kind of
//! input and returns `Err(Ignored)` when the input must not move the saga (a duplicate, a stale
//! attempt, a late timer, a cancel past the point of no return). The caller gets the effects and,
//! for an ignored input, why, and decides what to record: the core keeps no history.
//! Nothing here can panic: every index is checked, every counter saturates.

use crate::backoff;
use crate::definition::{RetryPolicy, SagaDefinition};
use crate::effect::{Command, Effect, SagaEvent};
use crate::input::{Input, Outcome, Timer, TimerKind};
use crate::state::{CommandStatus, Ignored, Phase, Saga, Status, StepIndex};
use crate::time::Timestamp;

/// The reason recorded when a step's action ran out of attempts without an answer.
pub const REASON_TIMED_OUT: &str = "timed_out";

/// What one input did to a saga.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// What the shell must do now, in order. Empty when the input was ignored.
    pub effects: Vec<Effect>,
    /// Why the input moved nothing, if it did not.
    pub ignored: Option<Ignored>,
}

/// Applies `input` at time `now` to `saga` and returns the new saga with what the input did.
pub fn transition(
    definition: &SagaDefinition,
    mut saga: Saga,
    input: &Input,
    now: Timestamp,
) -> (Saga, Applied) {
    let applied = saga.apply(definition, input, now);
    (saga, applied)
}

impl Saga {
    /// Applies one input in place. An ignored input leaves the saga exactly as it was.
    pub fn apply(&mut self, definition: &SagaDefinition, input: &Input, now: Timestamp) -> Applied {
        let mut effects = Vec::new();
        let ignored = if self.steps.len() != definition.len() {
            Err(Ignored::DefinitionMismatch)
        } else {
            let mut step = Transition { saga: self, definition, now, effects: &mut effects };
            step.dispatch(input)
        }
        .err();
        if ignored.is_some() {
            // An ignored input must not leave half an effect behind.
            effects.clear();
        }
        Applied { effects, ignored }
    }
}

/// One transition in progress: the saga being changed and the effects collected so far.
struct Transition<'a> {
    saga: &'a mut Saga,
    definition: &'a SagaDefinition,
    now: Timestamp,
    effects: &'a mut Vec<Effect>,
}

/// Why the current attempt did not succeed; decides the reason given if attempts run out.
enum Failure<'a> {
    TimedOut,
    Transient(&'a str),
}

impl Transition<'_> {
    fn dispatch(&mut self, input: &Input) -> Result<(), Ignored> {
        match input {
            Input::Start => self.on_start(),
            Input::Reply { step, phase, attempt, outcome } => self.on_reply(*step, *phase, *attempt, outcome),
            Input::TimerFired { timer } => self.on_timer(timer),
            Input::Cancel { reason } => self.on_cancel(reason),
            Input::Retry => self.on_retry(),
        }
    }

    fn on_start(&mut self) -> Result<(), Ignored> {
        if self.saga.status != Status::NotStarted {
            return Err(Ignored::AlreadyStarted);
        }
        self.saga.status = Status::Running;
        self.publish(SagaEvent::Started);
        self.send(0, Phase::Action);
        Ok(())
    }

    fn on_reply(
        &mut self,
        step: StepIndex,
        phase: Phase,
        attempt: u32,
        outcome: &Outcome,
    ) -> Result<(), Ignored> {
        self.check_live()?;
        let progress = self.saga.steps.get(step as usize).ok_or(Ignored::UnknownStep)?.progress(phase);
        if phase == Phase::Compensation && *outcome == Outcome::Success {
            return self.on_compensation_success(step, attempt);
        }
        // An action's reply only counts while going forward and a compensation's only while
        // compensating: a late answer from the other direction is a leftover, not news.
        let direction_matches = match phase {
            Phase::Action => self.saga.status == Status::Running,
            Phase::Compensation => self.saga.status == Status::Compensating,
        };
        if !direction_matches || !progress.is_pending() {
            return Err(Ignored::NotAwaited);
        }
        // Only the latest attempt counts. Every attempt carries the same idempotency key, so
        // the latest one's answer is the answer; older ones add nothing.
        if attempt != progress.attempts {
            return Err(Ignored::StaleAttempt);
        }
        // While backing off, the latest attempt's failure is already counted: a transient
        // answer to it (say, a duplicate) must not count again. A definite answer still helps.
        let failed_attempt = matches!(
            (phase, outcome),
            (_, Outcome::Transient { .. }) | (Phase::Compensation, Outcome::Failure { .. })
        );
        if progress.status == CommandStatus::BackingOff && failed_attempt {
            return Err(Ignored::NotAwaited);
        }
        self.saga.timer = None;
        match (phase, outcome) {
            (Phase::Action, Outcome::Success) => {
                self.set_status(step, phase, CommandStatus::Succeeded);
                self.publish(SagaEvent::StepSucceeded { step });
                if (step as usize) + 1 < self.definition.len() {
                    self.send(step + 1, Phase::Action);
                } else {
                    self.finish(Status::Completed);
                }
            }
            (Phase::Action, Outcome::Failure { reason }) => {
                self.set_status(step, phase, CommandStatus::Failed { reason: reason.clone() });
                self.publish(SagaEvent::StepFailed { step, reason: reason.clone() });
                if self.is_compensable(step) {
                    self.begin_compensation(reason);
                } else {
                    // Past the point of no return there is no undo, and asking again with the
                    // same key gets the same refusal: only an operator can help.
                    self.become_stuck(step, phase);
                }
            }
            // A compensation must eventually succeed, so even a "business" refusal of one is
            // only a failed attempt.
            (_, Outcome::Transient { reason }) | (Phase::Compensation, Outcome::Failure { reason }) => {
                self.retry_or_give_up(step, phase, Failure::Transient(reason));
            }
            // Taken by `on_compensation_success` before anything here ran.
            (Phase::Compensation, Outcome::Success) => {}
        }
        Ok(())
    }

    /// A compensation succeeded. Every attempt of a compensation carries the same idempotency
    /// key, and the participant's barrier answers every attempt alike, so a definite success
    /// is the truth whichever attempt it answers: a late one settles the step even after the
    /// saga gave up waiting and became `stuck` (after a participant's long freeze, say).
    fn on_compensation_success(&mut self, step: StepIndex, attempt: u32) -> Result<(), Ignored> {
        let progress = &self.saga.steps[step as usize].compensation;
        let awaited = matches!(
            progress.status,
            CommandStatus::Waiting | CommandStatus::BackingOff | CommandStatus::Exhausted
        );
        if !awaited || !matches!(self.saga.status, Status::Compensating | Status::Stuck) {
            return Err(Ignored::NotAwaited);
        }
        // Attempt 0 was never sent, and a later one not yet: either is forged or garbled.
        if attempt == 0 || attempt > progress.attempts {
            return Err(Ignored::StaleAttempt);
        }
        self.saga.timer = None;
        self.saga.status = Status::Compensating;
        self.set_status(step, Phase::Compensation, CommandStatus::Succeeded);
        self.publish(SagaEvent::StepCompensated { step });
        self.continue_compensation();
        Ok(())
    }

    fn on_timer(&mut self, timer: &Timer) -> Result<(), Ignored> {
        self.check_live()?;
        match self.saga.timer {
            Some((armed, _)) if armed != *timer => return Err(Ignored::StaleTimer),
            None => return Err(Ignored::StaleTimer),
            Some((_, at)) if self.now < at => return Err(Ignored::NotDue),
            Some(_) => {}
        }
        self.saga.timer = None;
        match timer.kind {
            TimerKind::AttemptTimeout => self.retry_or_give_up(timer.step, timer.phase, Failure::TimedOut),
            TimerKind::Backoff => self.send(timer.step, timer.phase),
        }
        Ok(())
    }

    fn on_cancel(&mut self, reason: &str) -> Result<(), Ignored> {
        match self.saga.status {
            Status::NotStarted => {
                // Nothing ran, so nothing needs undoing.
                self.saga.reason = Some(reason.to_owned());
                self.finish(Status::Compensated);
                Ok(())
            }
            Status::Running if self.saga.past_point_of_no_return(self.definition) => {
                Err(Ignored::PastPointOfNoReturn)
            }
            Status::Running => {
                self.begin_compensation(reason);
                Ok(())
            }
            Status::Compensating | Status::Stuck => Err(Ignored::AlreadyCompensating),
            Status::Completed | Status::Compensated => Err(Ignored::Finished),
        }
    }

    fn on_retry(&mut self) -> Result<(), Ignored> {
        if self.saga.status != Status::Stuck {
            return Err(Ignored::NotStuck);
        }
        // A saga is stuck on exactly one command: an exhausted compensation, or a refused action
        // past the point of no return. Give it a fresh budget and send it again.
        let stuck = self.saga.steps.iter().enumerate().find_map(|(i, s)| {
            if s.compensation.status == CommandStatus::Exhausted {
                Some((i as StepIndex, Phase::Compensation, Status::Compensating))
            } else if matches!(s.action.status, CommandStatus::Failed { .. })
                && !self.is_compensable(i as StepIndex)
            {
                Some((i as StepIndex, Phase::Action, Status::Running))
            } else {
                None
            }
        });
        let Some((step, phase, status)) = stuck else {
            return Err(Ignored::NotStuck);
        };
        self.saga.status = status;
        if let Some(progress) = self.progress_mut(step, phase) {
            progress.budget_start = progress.attempts;
        }
        self.publish(SagaEvent::Resumed);
        self.send(step, phase);
        Ok(())
    }

    // ----- The moves the handlers above are made of -----

    fn check_live(&self) -> Result<(), Ignored> {
        match self.saga.status {
            Status::NotStarted => Err(Ignored::NotStarted),
            Status::Completed | Status::Compensated => Err(Ignored::Finished),
            Status::Running | Status::Compensating | Status::Stuck => Ok(()),
        }
    }

    /// Sends the next attempt of a command and arms its timeout.
    fn send(&mut self, step: StepIndex, phase: Phase) {
        let Some(definition) = self.definition.step(step) else { return };
        let command = match phase {
            Phase::Action => definition.action.clone(),
            Phase::Compensation => match &definition.compensation {
                Some(c) => c.command.clone(),
                None => return,
            },
        };
        let Some(timeout) = self.policy(step, phase).map(|p| p.attempt_timeout) else { return };
        let Some(progress) = self.progress_mut(step, phase) else { return };
        progress.attempts = progress.attempts.saturating_add(1);
        progress.status = CommandStatus::Waiting;
        let attempt = progress.attempts;
        let idempotency_key = format!("{}/{}/{}", self.saga.id, definition.name, phase);
        self.effects.push(Effect::Send {
            command: Command {
                step,
                step_name: definition.name.clone(),
                phase,
                command,
                attempt,
                idempotency_key,
            },
        });
        self.arm(Timer { step, phase, attempt, kind: TimerKind::AttemptTimeout }, self.now.after(timeout));
    }

    /// After a failed or timed-out attempt: wait and try again, or give up when the budget is spent.
    fn retry_or_give_up(&mut self, step: StepIndex, phase: Phase, failure: Failure<'_>) {
        let Some(policy) = self.policy(step, phase).cloned() else { return };
        // A step without compensation cannot be undone once sent, so it never gives up.
        let unlimited = phase == Phase::Action && !self.is_compensable(step);
        let seed = self.saga.seed;
        let Some(progress) = self.progress_mut(step, phase) else { return };
        progress.last_error = Some(match failure {
            Failure::TimedOut => "attempt timed out".to_owned(),
            Failure::Transient(reason) => reason.to_owned(),
        });
        let used = progress.attempts.saturating_sub(progress.budget_start);
        let budget_left = unlimited || policy.max_attempts.is_none_or(|max| used < max);
        if budget_left {
            let attempt = progress.attempts;
            let delay = backoff::delay(&policy, seed, step, phase, attempt);
            if delay.0 == 0 {
                self.send(step, phase);
            } else {
                progress.status = CommandStatus::BackingOff;
                self.arm(Timer { step, phase, attempt, kind: TimerKind::Backoff }, self.now.after(delay));
            }
            return;
        }
        progress.status = CommandStatus::Exhausted;
        match phase {
            Phase::Action => {
                let reason = match failure {
                    Failure::TimedOut => REASON_TIMED_OUT,
                    Failure::Transient(reason) => reason,
                };
                self.begin_compensation(reason);
            }
            Phase::Compensation => self.become_stuck(step, phase),
        }
    }

    /// Turns the saga around: every action that may have happened gets compensated, last first.
    fn begin_compensation(&mut self, reason: &str) {
        self.saga.status = Status::Compensating;
        self.saga.reason = Some(reason.to_owned());
        self.saga.timer = None;
        for step in &mut self.saga.steps {
            if step.action.is_pending() {
                step.action.status = CommandStatus::Abandoned;
            }
        }
        self.publish(SagaEvent::CompensationStarted { reason: reason.to_owned() });
        self.continue_compensation();
    }

    /// Sends the compensation of the latest step that still needs one, or finishes.
    fn continue_compensation(&mut self) {
        let next = (0..self.saga.steps.len()).rev().find(|&i| {
            let step = &self.saga.steps[i];
            self.is_compensable(i as StepIndex)
                && step.action_may_have_happened()
                && step.compensation.status != CommandStatus::Succeeded
        });
        match next {
            Some(i) => self.send(i as StepIndex, Phase::Compensation),
            None => self.finish(Status::Compensated),
        }
    }

    fn become_stuck(&mut self, step: StepIndex, phase: Phase) {
        self.saga.status = Status::Stuck;
        self.saga.timer = None;
        self.publish(SagaEvent::Stuck { step, phase });
    }

    fn finish(&mut self, status: Status) {
        self.saga.status = status;
        self.saga.timer = None;
        match status {
            Status::Completed => self.publish(SagaEvent::Completed),
            _ => {
                let reason = self.saga.reason.clone().unwrap_or_default();
                self.publish(SagaEvent::Compensated { reason });
            }
        }
        self.effects.push(Effect::Finished { status });
    }

    fn arm(&mut self, timer: Timer, at: Timestamp) {
        self.saga.timer = Some((timer, at));
        self.effects.push(Effect::ArmTimer { timer, at });
    }

    fn publish(&mut self, event: SagaEvent) {
        self.effects.push(Effect::Publish { event });
    }

    fn set_status(&mut self, step: StepIndex, phase: Phase, status: CommandStatus) {
        if let Some(progress) = self.progress_mut(step, phase) {
            progress.status = status;
        }
    }

    fn progress_mut(&mut self, step: StepIndex, phase: Phase) -> Option<&mut crate::CommandProgress> {
        self.saga.steps.get_mut(step as usize).map(|s| s.progress_mut(phase))
    }

    fn policy(&self, step: StepIndex, phase: Phase) -> Option<&RetryPolicy> {
        let step = self.definition.step(step)?;
        match phase {
            Phase::Action => Some(&step.retry),
            Phase::Compensation => step.compensation.as_ref().map(|c| &c.retry),
        }
    }

    fn is_compensable(&self, step: StepIndex) -> bool {
        self.definition.step(step).is_some_and(|s| s.compensation.is_some())
    }
}
