//! Property tests of the saga state machine. Each property runs 1,000 generated cases by default
//! (`PROPTEST_CASES` changes that) and prints its count. The invariants, numbered as in
//! ARCHITECTURE.md, are checked after every single input by `support::world::World::apply`:
//!
//! 1. A terminal state never changes.
//! 2. Forward commands go out strictly in step order, and none after compensation began.
//! 3. The compensations sent are exactly those of steps whose action succeeded or may have
//!    succeeded, last step first, each until it succeeds or the saga is stuck.
//! 4. `completed` iff every step succeeded; `compensated` iff no effect remains.
//! 5. Applying the same input twice equals applying it once.
//! 6. Replaying the history equals the live state.
//! 7. When every command is eventually answered, the saga ends within a bounded number of inputs.

mod support;

use proptest::prelude::*;
use sagaflow_saga::{
    CommandStatus, HistoryEntry, Input, Outcome, Phase, Saga, SagaDefinition, Status, Timer, TimerKind,
    Timestamp,
};
use support::world::{behaviours, moves, Behaviour, World};
use support::{check, definition};

/// Generous: the longest fair run needs a few hundred inputs (6 steps, each with hiccups, and
/// compensations that fail several times and need an operator's retry).
const END_WITHIN: usize = 2_000;

fn world_setup() -> impl Strategy<Value = (SagaDefinition, Vec<Behaviour>, u64)> {
    definition().prop_flat_map(|d| {
        let b = behaviours(&d);
        (Just(d), b, any::<u64>())
    })
}

#[test]
fn adversarial_schedules_keep_every_invariant() {
    let strategy = (world_setup(), moves(150));
    check(
        "adversarial_schedules_keep_every_invariant",
        strategy,
        |((definition, behaviours, seed), moves)| {
            let mut world = World::new(definition, behaviours, seed);
            world.start();
            for m in &moves {
                world.play(m);
            }
            // Whatever happened so far, fair delivery from here on must end the saga (invariant 7).
            world.run_to_end(END_WITHIN);
            world.replayed();
            // Late leftovers after the end change nothing (invariant 1 is checked on each of them).
            for m in &moves {
                world.play(m);
            }
            Ok(())
        },
    );
}

/// A small reference model: with fair delivery and no cancel, the outcome follows from the
/// participants' behaviour alone.
fn predicted_outcome(
    definition: &SagaDefinition,
    behaviours: &[Behaviour],
) -> (Status, Option<String>, Vec<u32>) {
    for (i, (step, b)) in definition.steps().iter().zip(behaviours).enumerate() {
        let i = i as u32;
        if step.compensation.is_some() {
            if let Some(max) = step.retry.max_attempts {
                if b.action_hiccups >= max {
                    // The step's own action may have happened, so it is compensated too.
                    return (Status::Compensated, Some("busy".into()), (0..=i).rev().collect());
                }
            }
        }
        if b.refuse_action {
            return (Status::Compensated, Some("declined".into()), (0..i).rev().collect());
        }
    }
    (Status::Completed, None, Vec::new())
}

#[test]
fn fair_runs_end_as_the_reference_model_predicts() {
    check(
        "fair_runs_end_as_the_reference_model_predicts",
        world_setup(),
        |(definition, behaviours, seed)| {
            let (status, reason, compensated) = predicted_outcome(&definition, &behaviours);
            let mut world = World::new(definition, behaviours, seed);
            world.start();
            world.run_to_end(END_WITHIN);
            prop_assert_eq!(world.saga.status(), status);
            prop_assert_eq!(world.saga.reason().map(str::to_owned), reason);
            let mut order: Vec<u32> = Vec::new();
            for c in world.sent.iter().filter(|c| c.phase == Phase::Compensation) {
                if order.last() != Some(&c.step) {
                    order.push(c.step);
                }
            }
            prop_assert_eq!(order, compensated);
            Ok(())
        },
    );
}

#[test]
fn cancel_at_any_point_undoes_everything_or_is_refused() {
    let strategy = (world_setup(), 0usize..40);
    check(
        "cancel_at_any_point_undoes_everything_or_is_refused",
        strategy,
        |((definition, behaviours, seed), fair_moves)| {
            let mut world = World::new(definition, behaviours, seed);
            world.start();
            for _ in 0..fair_moves {
                if world.saga.is_terminal() {
                    break;
                }
                if !world.replies.is_empty() {
                    world.deliver_reply(0, false);
                } else if !world.commands.is_empty() {
                    world.deliver_command(0, false);
                } else {
                    world.fire_timer();
                }
            }
            let status_before = world.saga.status();
            let could_cancel = world.saga.can_cancel(&world.definition);
            world.apply(Input::Cancel { reason: "cancelled".into() });
            world.run_to_end(END_WITHIN);
            if could_cancel {
                prop_assert_eq!(world.saga.status(), Status::Compensated);
                prop_assert_eq!(world.saga.reason(), Some("cancelled"));
                prop_assert!(world.participants.iter().all(|p| !p.effect_present));
            } else {
                prop_assert!(
                    status_before != Status::Running || world.saga.past_point_of_no_return(&world.definition)
                );
            }
            Ok(())
        },
    );
}

/// Any input at all, including ones no honest shell would send: the machine never panics, keeps
/// its own invariants, and its history replays exactly.
fn any_input(steps: u32) -> impl Strategy<Value = Input> {
    let phase = prop_oneof![Just(Phase::Action), Just(Phase::Compensation)];
    let outcome = prop_oneof![
        Just(Outcome::Success),
        Just(Outcome::Failure { reason: "declined".into() }),
        Just(Outcome::Transient { reason: "busy".into() }),
    ];
    let kind = prop_oneof![Just(TimerKind::AttemptTimeout), Just(TimerKind::Backoff)];
    prop_oneof![
        1 => Just(Input::Start),
        6 => (0..steps + 2, phase.clone(), 0u32..5, outcome)
            .prop_map(|(step, phase, attempt, outcome)| Input::Reply { step, phase, attempt, outcome }),
        3 => (0..steps + 2, phase, 0u32..5, kind)
            .prop_map(|(step, phase, attempt, kind)| Input::TimerFired { timer: Timer { step, phase, attempt, kind } }),
        1 => Just(Input::Cancel { reason: "cancelled".into() }),
        1 => Just(Input::Retry),
    ]
}

#[test]
fn arbitrary_inputs_never_panic_and_replay_exactly() {
    let strategy = definition().prop_flat_map(|d| {
        let n = d.len() as u32;
        (Just(d), any::<u64>(), prop::collection::vec((any_input(n), 0u64..100), 0..120))
    });
    check("arbitrary_inputs_never_panic_and_replay_exactly", strategy, |(definition, seed, inputs)| {
        let mut saga = Saga::new("saga-x", &definition, seed);
        let mut now = Timestamp(0);
        let mut history = Vec::new();
        for (input, wait) in inputs {
            now = Timestamp(now.0 + wait);
            let before = saga.clone();
            let applied = saga.apply(&definition, &input, now);
            if before.is_terminal() || applied.ignored.is_some() {
                prop_assert!(applied.effects.is_empty());
                prop_assert_eq!(&before, &saga);
            }
            let mut again = saga.clone();
            prop_assert!(again.apply(&definition, &input, now).effects.is_empty());
            prop_assert_eq!(&again, &saga);
            let live = matches!(saga.status(), Status::Running | Status::Compensating);
            prop_assert_eq!(live, saga.timer().is_some());
            history.push(HistoryEntry { at: now, input, ignored: applied.ignored });
        }
        let replayed = Saga::replay("saga-x", &definition, seed, &history);
        prop_assert_eq!(&replayed, &saga);
        let moved = history.iter().filter(|h| h.ignored.is_none());
        prop_assert_eq!(Saga::replay("saga-x", &definition, seed, moved), saga);
        Ok(())
    });
}

/// Compensations whose answers all come late, after the saga gave up on them: a success,
/// whichever attempt it answers, settles the stuck step without an operator. Without that rule
/// such a saga stays `stuck` although nothing is left to undo.
#[test]
fn late_compensation_answers_settle_a_stuck_saga_without_an_operator() {
    let strategy = (world_setup(), any::<u64>());
    check(
        "late_compensation_answers_settle_a_stuck_saga_without_an_operator",
        strategy,
        |((definition, behaviours, seed), shuffle)| {
            let mut world = World::new(definition, behaviours, seed);
            world.start();
            let mut held: Vec<Input> = Vec::new();
            // Forward work runs fairly; compensation answers are held back, so every
            // compensation times out until the saga is stuck (or it ends without one, or a
            // compensation without an attempt limit keeps trying: then there is nothing to see).
            for _ in 0..END_WITHIN {
                if world.saga.is_terminal() || world.saga.status() == Status::Stuck {
                    break;
                }
                if let Some(i) = world.replies.iter().position(|r| !is_compensation(r)) {
                    let reply = world.replies.remove(i);
                    world.apply(reply);
                } else if !world.commands.is_empty() {
                    world.deliver_command(0, false);
                    held.extend(world.replies.iter().filter(|r| is_compensation(r)).cloned());
                    world.replies.retain(|r| !is_compensation(r));
                } else {
                    world.fire_timer();
                }
            }
            let Some(stuck) = world
                .saga
                .steps()
                .iter()
                .position(|s| s.compensation().status() == &CommandStatus::Exhausted)
                .filter(|_| world.saga.status() == Status::Stuck)
            else {
                return Ok(()); // not stuck on a compensation: nothing to see here
            };
            let answered = held.iter().any(|r| {
                matches!(r, Input::Reply { step, outcome: Outcome::Success, .. } if *step as usize == stuck)
            });
            // The held answers arrive now, in a generated order.
            let n = held.len().max(1);
            held.rotate_left((shuffle % n as u64) as usize);
            for reply in held {
                world.apply(reply);
            }
            if answered {
                prop_assert_eq!(
                    world.saga.steps()[stuck].compensation().status(),
                    &CommandStatus::Succeeded,
                    "a late success did not settle the stuck compensation"
                );
            }
            world.run_to_end(END_WITHIN);
            prop_assert_eq!(world.saga.status(), Status::Compensated);
            Ok(())
        },
    );
}

fn is_compensation(input: &Input) -> bool {
    matches!(input, Input::Reply { phase: Phase::Compensation, .. })
}
