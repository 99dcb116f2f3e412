//! The one Redis session engine's decisions: a session's modes as one
//! explicit state ([`SessionState`]) and what it does with each client
//! command ([`SessionState::step`]), whichever connection serves it.
//!
//! The three drivers (a session of its own connection, [`crate::run`]; the
//! shared connection, [`crate::shared`]; a cluster, [`crate::cluster`]) do
//! the same for every command they read: parse it ([`Cmd::of`]), ask
//! [`SessionState::step`] for an [`Action`] (answer locally, refuse,
//! forward, rewrite, move to a connection of the session's own, route in
//! the cluster), audit it ([`Cmd::event`]) and do the I/O the action asks
//! for. Where an action needs I/O whose outcome changes the state (a
//! protocol switch of the backend connection, a move to the RESP3 shared
//! connection), the driver reports the outcome back
//! ([`SessionState::backend_switched`], [`SessionState::shared_resp3`]).
//! Nothing here does I/O: every transition is unit-tested below.

use std::collections::HashSet;

use bytes::Bytes;

use crate::cluster::{self, Route};
use crate::resp::Command;
use crate::shared::{self, Known, Setup};
use crate::{teleport_error, CommandEvent, Frame};

/// The protocol the client speaks (`HELLO 2|3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Resp2,
    Resp3,
}

/// Where a session's commands go.
#[derive(Debug)]
pub(crate) enum Placement {
    /// The database's shared connection ([`crate::shared`]): the settings
    /// the session made there (replayed on its own connection if it
    /// moves) and what that connection's server knows.
    Shared { setup: Setup, known: Known },
    /// A backend connection of the session's own.
    Own(Own),
    /// A Redis Cluster ([`crate::cluster`]).
    Cluster,
}

/// The modes of a session on a backend connection of its own.
#[derive(Debug)]
pub(crate) struct Own {
    /// Replies can be counted: false after `MONITOR`, or a subscription
    /// while the backend speaks RESP2 (local answers are then written at
    /// once).
    counting: bool,
    /// The credentials expire: the engine re-authenticates on the
    /// connection (so a RESP2 subscriber's backend is switched to RESP3).
    reauth: bool,
    /// The engine switched the backend to RESP3 for this RESP2 client and
    /// translates its replies back.
    translated: bool,
    /// A backend switch was asked for the command being decided.
    switching: bool,
}

/// The channels, patterns and shard channels a session is subscribed to,
/// followed from the client's commands (Redis keeps sets, so the engine
/// knows as well as the server when the last one goes).
#[derive(Debug, Default)]
struct Subscriptions {
    channels: HashSet<Vec<u8>>,
    patterns: HashSet<Vec<u8>>,
    shards: HashSet<Vec<u8>>,
}

impl Subscriptions {
    fn apply(&mut self, name: &str, args: &[&[u8]]) {
        let (set, add) = match name {
            "SUBSCRIBE" => (&mut self.channels, true),
            "PSUBSCRIBE" => (&mut self.patterns, true),
            "SSUBSCRIBE" => (&mut self.shards, true),
            "UNSUBSCRIBE" => (&mut self.channels, false),
            "PUNSUBSCRIBE" => (&mut self.patterns, false),
            "SUNSUBSCRIBE" => (&mut self.shards, false),
            _ => return,
        };
        if add {
            set.extend(args.iter().map(|a| a.to_vec()));
        } else if args.is_empty() {
            set.clear();
        } else {
            for a in args {
                set.remove(*a);
            }
        }
    }

    fn active(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shards.is_empty())
    }
}

/// Everything that decides what a client command does.
#[derive(Debug)]
pub(crate) struct SessionState {
    /// The session's database user: `AUTH` (or `HELLO ... AUTH`) naming
    /// another is refused; `None` accepts any.
    db_user: Option<String>,
    protocol: Protocol,
    /// Inside `MULTI` ... `EXEC`: a command the engine sent would be
    /// queued into the client's transaction.
    in_multi: bool,
    subscriptions: Subscriptions,
    placement: Placement,
}

/// How a translated reply (RESP3 backend, RESP2 client) is reshaped beyond
/// the type mapping: one per counted command while translating, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyFix {
    AsIs,
    /// `PING [message]` on a subscribed RESP2 connection answers
    /// `*2 pong <message or "">`, where RESP3 answers `+PONG` or the message.
    Pong,
}

impl ReplyFix {
    pub(crate) fn apply(self, reply: Frame) -> Frame {
        let pong = || Frame::Bulk(Bytes::from_static(b"pong"));
        match (self, reply) {
            (ReplyFix::Pong, Frame::Simple(_)) => {
                Frame::Array(vec![pong(), Frame::Bulk(Bytes::new())])
            }
            (ReplyFix::Pong, Frame::Bulk(msg)) => Frame::Array(vec![pong(), Frame::Bulk(msg)]),
            (_, other) => other,
        }
    }
}

/// What a driver does with one client command.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    /// Answer it here, in its place in the reply order (a refusal when it
    /// is `-ERR Teleport: ...`).
    Answer(Bytes),
    /// Send the command's bytes as they are.
    Forward {
        /// Exactly one reply is expected (else replies are not counted for
        /// it: subscription confirmations, `MONITOR`).
        counted: bool,
        /// How its reply is reshaped while the engine translates.
        fix: Option<ReplyFix>,
        /// The last subscription went on a translated connection: switch
        /// the backend back to RESP2 once its replies are in
        /// ([`SessionState::backend_switched`]).
        then_resp2: bool,
    },
    /// Send these bytes instead (one reply expected).
    Rewrite {
        bytes: Vec<u8>,
        fix: Option<ReplyFix>,
    },
    /// Switch the backend connection to this protocol first (once every
    /// reply is in), report the outcome with
    /// [`SessionState::backend_switched`], then step the same command again.
    SwitchBackend(Protocol),
    /// On the shared connection: the session needs a connection of its own
    /// for this command and everything after it (not audited here: the
    /// session's own connection reads it again).
    MoveToOwn,
    /// On the shared connection: `HELLO 3`, served by the database's RESP3
    /// shared connection (whose `HELLO` reply is the answer), setting this
    /// client name; [`SessionState::shared_resp3`] when it could be had,
    /// else [`Action::MoveToOwn`].
    SharedResp3 { name: Option<Vec<u8>> },
    /// In a cluster: send it where this route says.
    Route(Route),
    /// In a cluster: answer `+OK` and end the session.
    Quit,
}

/// A client command as the decisions read it.
pub(crate) struct Cmd<'a> {
    /// Upper-cased command name.
    pub(crate) name: String,
    /// The arguments, the name first (as sent).
    args: Vec<&'a [u8]>,
}

impl<'a> Cmd<'a> {
    /// The command's name and arguments (`None` for none: the parser
    /// refuses empty commands).
    pub(crate) fn of(command: &'a Command) -> Option<Cmd<'a>> {
        let args = command.args();
        let name = String::from_utf8_lossy(args.first()?).to_ascii_uppercase();
        Some(Cmd { name, args })
    }

    /// The arguments after the name.
    pub(crate) fn rest(&self) -> &[&'a [u8]] {
        self.args.get(1..).unwrap_or_default()
    }

    /// The name as the client spelled it.
    fn first(&self) -> &'a [u8] {
        self.args.first().copied().unwrap_or_default()
    }

    /// The audit event: secrets hidden, and the refusal when the command's
    /// answer, `answer`, is the engine's own (`-ERR Teleport: ...`).
    pub(crate) fn event(&self, answer: Option<&[u8]>) -> CommandEvent {
        let mut event = audit_event(&self.name, self.rest());
        event.refused = answer.and_then(refusal);
        event
    }
}

impl SessionState {
    /// A session on the database's shared connection.
    pub(crate) fn shared(db_user: Option<String>, known: Known) -> SessionState {
        SessionState::new(
            db_user,
            Protocol::Resp2,
            Placement::Shared {
                setup: Setup::default(),
                known,
            },
        )
    }

    /// A session on a connection of its own, whose client speaks
    /// `protocol` already; `reauth`: its credentials expire.
    pub(crate) fn own(db_user: Option<String>, protocol: Protocol, reauth: bool) -> SessionState {
        SessionState::new(
            db_user,
            protocol,
            Placement::Own(Own {
                counting: true,
                reauth,
                translated: false,
                switching: false,
            }),
        )
    }

    /// A session in front of a Redis Cluster.
    pub(crate) fn cluster(db_user: Option<String>) -> SessionState {
        SessionState::new(db_user, Protocol::Resp2, Placement::Cluster)
    }

    fn new(db_user: Option<String>, protocol: Protocol, placement: Placement) -> SessionState {
        SessionState {
            db_user,
            protocol,
            in_multi: false,
            subscriptions: Subscriptions::default(),
            placement,
        }
    }

    /// Decides what to do with `cmd` and moves to the state after it.
    pub(crate) fn step(&mut self, cmd: &Cmd<'_>) -> Action {
        match self.placement {
            Placement::Own(_) => self.step_own(cmd),
            Placement::Shared { .. } => self.step_shared(cmd),
            Placement::Cluster => self.step_cluster(cmd),
        }
    }

    /// The settings the session made on the shared connection, to replay
    /// on a connection of its own (`None` elsewhere).
    pub(crate) fn setup(&self) -> Option<&Setup> {
        match &self.placement {
            Placement::Shared { setup, .. } => Some(setup),
            _ => None,
        }
    }

    /// The session moves to a connection of its own (after
    /// [`Action::MoveToOwn`], once its settings are replayed there),
    /// keeping its user and protocol; `reauth`: the credentials expire.
    pub(crate) fn into_own(self, reauth: bool) -> SessionState {
        SessionState::own(self.db_user, self.protocol, reauth)
    }

    /// The protocol the client speaks.
    #[cfg(test)]
    fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Inside `MULTI` ... `EXEC`.
    pub(crate) fn in_multi(&self) -> bool {
        self.in_multi
    }

    /// Replies are still counted (see [`Own::counting`]); always on other
    /// placements.
    pub(crate) fn counting(&self) -> bool {
        match &self.placement {
            Placement::Own(own) => own.counting,
            _ => true,
        }
    }

    /// The credentials stopped expiring: no more re-authentication.
    pub(crate) fn reauth_ended(&mut self) {
        if let Placement::Own(own) = &mut self.placement {
            own.reauth = false;
        }
    }

    /// The outcome of [`Action::SwitchBackend`] (or of the switch back
    /// that [`Action::Forward`]'s `then_resp2` asked for): `ok` unless the
    /// server refused it, in which case the connection stays as it was.
    pub(crate) fn backend_switched(&mut self, to: Protocol, ok: bool) {
        if let Placement::Own(own) = &mut self.placement {
            if ok {
                own.translated = to == Protocol::Resp3;
            }
        }
    }

    /// The session now uses the database's RESP3 shared connection (after
    /// [`Action::SharedResp3`]), whose server knows `known`.
    pub(crate) fn shared_resp3(&mut self, name: Option<&[u8]>, known: Known) {
        if let Placement::Shared { setup, known: k } = &mut self.placement {
            if let Some(n) = name {
                setup.set_name(n);
            }
            setup.resp3 = true;
            *k = known;
            self.protocol = Protocol::Resp3;
        }
    }

    /// The session's shared connection was replaced by one whose server
    /// knows `known`.
    pub(crate) fn shared_reconnected(&mut self, known: Known) {
        if let Placement::Shared { known: k, .. } = &mut self.placement {
            *k = known;
        }
    }

    fn step_shared(&mut self, cmd: &Cmd<'_>) -> Action {
        let db_user = self.db_user.as_deref();
        let Placement::Shared { setup, known } = &mut self.placement else {
            return Action::MoveToOwn;
        };
        let rest = cmd.rest();
        match cmd.name.as_str() {
            "AUTH" => Action::Answer(local_auth(rest, db_user).into()),
            "CLIENT" => match setup.answer(rest, known) {
                Some(reply) => Action::Answer(reply.into()),
                None => Action::MoveToOwn,
            },
            // `AUTH` as another user is refused as `AUTH` is.
            "HELLO" => match hello_refusal(rest, db_user) {
                Some(refused) => Action::Answer(refused.into()),
                None => match shared::hello3_options(rest) {
                    Some(name) => Action::SharedResp3 {
                        name: name.map(<[u8]>::to_vec),
                    },
                    None => Action::MoveToOwn,
                },
            },
            name if shared::shareable(name) => Action::Forward {
                counted: true,
                fix: None,
                then_resp2: false,
            },
            _ => Action::MoveToOwn,
        }
    }

    fn step_cluster(&mut self, cmd: &Cmd<'_>) -> Action {
        let db_user = self.db_user.as_deref();
        let rest = cmd.rest();
        let route = match cmd.name.as_str() {
            "AUTH" => return Action::Answer(local_auth(rest, db_user).into()),
            // `AUTH` as another user is refused as `AUTH` is.
            "HELLO" => match hello_refusal(rest, db_user) {
                Some(refused) => return Action::Answer(refused.into()),
                None => Route::Hello,
            },
            name => cluster::classify(name, rest),
        };
        match route {
            Route::Local(reply) => Action::Answer(reply),
            Route::Quit => Action::Quit,
            route => Action::Route(route),
        }
    }

    fn step_own(&mut self, cmd: &Cmd<'_>) -> Action {
        let Placement::Own(own) = &mut self.placement else {
            return Action::MoveToOwn;
        };
        let name = cmd.name.as_str();
        let rest = cmd.rest();
        // A RESP2 client subscribing while the credentials expire: the
        // backend first switches to RESP3, so that AUTH stays possible
        // (Redis refuses it on a subscribed RESP2 connection).
        let switch = is_subscribe(name)
            && !rest.is_empty()
            && own.counting
            && self.protocol == Protocol::Resp2
            && !own.translated
            && !self.in_multi
            && own.reauth;
        let asked = std::mem::take(&mut own.switching);
        if switch && !asked {
            own.switching = true;
            return Action::SwitchBackend(Protocol::Resp3);
        }
        let subscribed = self.subscriptions.active();
        let refused = match own.translated && subscribed {
            true => resp2_subscribed(name, cmd.first()),
            false => None,
        };
        let (mut action, uncounted_after) = match refused {
            Some(refused) => (refused, false),
            None => {
                let counted_subscriptions = self.protocol == Protocol::Resp3 || own.translated;
                decide(name, rest, self.db_user.as_deref(), counted_subscriptions)
            }
        };
        match name {
            "MULTI" => self.in_multi = true,
            "EXEC" | "DISCARD" => self.in_multi = false,
            _ => {}
        }
        // A HELLO the engine refused changes nothing.
        if name == "HELLO" && !matches!(action, Action::Answer(_)) {
            match rest.first().copied() {
                Some(b"3") => self.protocol = Protocol::Resp3,
                Some(b"2") => self.protocol = Protocol::Resp2,
                _ => {}
            }
        }
        match &mut action {
            Action::Forward {
                counted,
                fix,
                then_resp2,
            } => {
                if *counted && own.translated {
                    *fix = Some(if name == "PING" && rest.len() <= 1 && subscribed {
                        ReplyFix::Pong
                    } else {
                        ReplyFix::AsIs
                    });
                }
                if uncounted_after {
                    own.counting = false;
                }
                self.subscriptions.apply(name, rest);
                // The last subscription is gone: back to RESP2.
                *then_resp2 = own.translated
                    && !self.subscriptions.active()
                    && matches!(name, "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE");
            }
            Action::Rewrite { fix, .. } if own.translated => *fix = Some(ReplyFix::AsIs),
            _ => {}
        }
        action
    }
}

fn is_subscribe(name: &str) -> bool {
    matches!(name, "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE")
}

/// What a session of its own connection does with a command, before the
/// translation's rules, and whether replies can no longer be counted after
/// it. `counted_subscriptions`: replies can still be counted
/// once subscribed, because the backend speaks RESP3 on this connection
/// (the client asked for it, or the engine translates for a RESP2 client):
/// subscription confirmations and messages are then push frames, every
/// other command gets one reply.
fn decide(
    name: &str,
    args: &[&[u8]],
    db_user: Option<&str>,
    counted_subscriptions: bool,
) -> (Action, bool) {
    let forward = |counted: bool, uncounted_after: bool| {
        let action = Action::Forward {
            counted,
            fix: None,
            then_resp2: false,
        };
        (action, uncounted_after)
    };
    let answer = |reply: Vec<u8>| (Action::Answer(reply.into()), false);
    match name {
        "AUTH" => answer(local_auth(args, db_user)),
        "HELLO" => match (hello_refusal(args, db_user), hello_without_auth(args)) {
            (Some(refused), _) => answer(refused),
            (None, Some(bytes)) => (Action::Rewrite { bytes, fix: None }, false),
            (None, None) => forward(true, false),
        },
        "RESET" => answer(teleport_error("RESET is not supported")),
        "CLIENT"
            if args
                .first()
                .is_some_and(|a| a.eq_ignore_ascii_case(b"REPLY")) =>
        {
            answer(teleport_error("CLIENT REPLY is not supported"))
        }
        // Without channels these are refused with one (counted) error.
        "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" if counted_subscriptions => {
            forward(args.is_empty(), false)
        }
        // Their confirmations are push frames, one per channel.
        "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE" if counted_subscriptions => {
            forward(false, false)
        }
        "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "MONITOR" => forward(false, true),
        // Without an active subscription these answer one frame per channel.
        "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE" => forward(false, true),
        _ => forward(true, false),
    }
}

/// What Redis allows a RESP2 client while it is subscribed, applied by the
/// engine when it has switched the backend to RESP3 for that client (Redis
/// itself would run anything on a RESP3 connection). `None`: decide as
/// usual.
fn resp2_subscribed(name: &str, first: &[u8]) -> Option<Action> {
    match name {
        // PING's reply is reshaped on its way back ([`ReplyFix::Pong`]).
        "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE"
        | "SUNSUBSCRIBE" | "PING" | "QUIT" | "RESET" => None,
        _ => Some(Action::Answer(Bytes::from(format!(
            "-ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
            String::from_utf8_lossy(first).to_lowercase().replace(['\r', '\n'], " ")
        )))),
    }
}

const REDACTED: &str = "******";

/// The audit event of a command (name upper-cased, arguments after it):
/// secrets (`AUTH`, `HELLO ... AUTH`, `MIGRATE ... AUTH/AUTH2`, `CONFIG
/// SET requirepass/masterauth`) are replaced by `******`.
pub(crate) fn audit_event(name: &str, args: &[&[u8]]) -> CommandEvent {
    let mut out: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let upper = |s: &String| s.to_ascii_uppercase();
    match name {
        "AUTH" => out.iter_mut().for_each(|a| *a = REDACTED.into()),
        "HELLO" | "MIGRATE" => {
            let mut i = 0;
            while i < out.len() {
                let n = match upper(&out[i]).as_str() {
                    "AUTH" if name == "HELLO" => 2,
                    "AUTH" => 1,
                    "AUTH2" => 2,
                    _ => 0,
                };
                for a in out.iter_mut().skip(i + 1).take(n) {
                    *a = REDACTED.into();
                }
                i += 1 + n;
            }
        }
        "CONFIG" if out.first().map(upper).as_deref() == Some("SET") => {
            let mut i = 1;
            while i + 1 < out.len() {
                if matches!(upper(&out[i]).as_str(), "REQUIREPASS" | "MASTERAUTH") {
                    out[i + 1] = REDACTED.into();
                }
                i += 2;
            }
        }
        _ => {}
    }
    CommandEvent {
        name: name.to_string(),
        args: out,
        refused: None,
    }
}

/// The refusal text of an engine-generated error reply (`-ERR Teleport: ...`).
fn refusal(reply: &[u8]) -> Option<String> {
    let text = reply.strip_prefix(b"-ERR Teleport: ")?;
    let text = text.strip_suffix(b"\r\n").unwrap_or(text);
    Some(String::from_utf8_lossy(text).into_owned())
}

/// The engine's answer to a client `AUTH`: the engine authenticates to the
/// server itself, so the client's password is not used; only the user it
/// names is checked against the session's (`AUTH <password>` means the
/// `default` user, as in Redis).
fn local_auth(args: &[&[u8]], db_user: Option<&str>) -> Vec<u8> {
    let named: &[u8] = match args {
        [_password] => b"default",
        [user, _password] => user,
        _ => return b"-ERR wrong number of arguments for 'auth' command\r\n".to_vec(),
    };
    auth_refusal(named, db_user).unwrap_or_else(|| b"+OK\r\n".to_vec())
}

/// The refusal of an `AUTH` (plain, or inside `HELLO`) that names a user
/// other than the session's; `None` when it may go on.
fn auth_refusal(named: &[u8], db_user: Option<&str>) -> Option<Vec<u8>> {
    match db_user {
        Some(u) if u.as_bytes() != named => Some(teleport_error(&format!(
            "this session is for database user {u:?}; AUTH as {:?} is not allowed (connect with --db-user to use another user)",
            String::from_utf8_lossy(named)
        ))),
        _ => None,
    }
}

/// Where the `AUTH <user> <password>` options of `HELLO <protover>
/// [options]` start in `args` (the arguments after `HELLO`), read as
/// Redis reads them: after the version, `AUTH` takes two arguments and
/// `SETNAME` one; the first option that does not fit ends the reading
/// (Redis answers it with a syntax error before authenticating anyone).
fn hello_auth_options(args: &[&[u8]]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let more = args.len() - 1 - i;
        if args[i].eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            found.push(i);
            i += 3;
        } else if args[i].eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            i += 2;
        } else {
            break;
        }
    }
    found
}

/// The refusal of a `HELLO ... AUTH <user> <password>` naming a user other
/// than the session's: the same as that `AUTH`'s (the protocol and the
/// name then stay as they were, as when Redis refuses `HELLO`'s `AUTH`).
fn hello_refusal(args: &[&[u8]], db_user: Option<&str>) -> Option<Vec<u8>> {
    hello_auth_options(args)
        .into_iter()
        .find_map(|i| auth_refusal(args.get(i + 1)?, db_user))
}

/// `HELLO` with its `AUTH <user> <password>` options removed (the engine
/// does the authentication); `None` when there was none.
pub(crate) fn hello_without_auth(args: &[&[u8]]) -> Option<Vec<u8>> {
    let auth = hello_auth_options(args);
    if auth.is_empty() {
        return None;
    }
    let mut kept: Vec<&[u8]> = vec![b"HELLO"];
    let mut i = 0;
    while i < args.len() {
        if auth.contains(&i) {
            i += 3;
        } else {
            kept.push(args[i]);
            i += 1;
        }
    }
    Some(Frame::command(kept).to_bytes())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::shared::Probe;

    fn args(s: &str) -> Vec<&[u8]> {
        s.split(' ').map(str::as_bytes).collect()
    }

    /// Steps `state` with the command written `line` (arguments split on
    /// spaces), returning the action and the audit event.
    fn step(state: &mut SessionState, line: &str) -> (Action, CommandEvent) {
        let command = Command::from_args(&line.split(' ').collect::<Vec<_>>());
        let cmd = Cmd::of(&command).unwrap();
        let action = state.step(&cmd);
        let answer = match &action {
            Action::Answer(reply) => Some(&reply[..]),
            _ => None,
        };
        let event = cmd.event(answer);
        (action, event)
    }

    fn act(state: &mut SessionState, line: &str) -> Action {
        step(state, line).0
    }

    /// `line` asks for a RESP3 backend first; the backend then switches
    /// (`accepted`) or refuses.
    fn backend_switch(state: &mut SessionState, line: &str, accepted: bool) {
        assert_eq!(
            act(state, line),
            Action::SwitchBackend(Protocol::Resp3),
            "{line}"
        );
        state.backend_switched(Protocol::Resp3, accepted);
    }

    fn forward(counted: bool, fix: Option<ReplyFix>, then_resp2: bool) -> Action {
        Action::Forward {
            counted,
            fix,
            then_resp2,
        }
    }

    fn answer(text: &str) -> Action {
        Action::Answer(Bytes::copy_from_slice(text.as_bytes()))
    }

    fn translated(state: &SessionState) -> bool {
        matches!(&state.placement, Placement::Own(own) if own.translated)
    }

    const NOT_ALICE: &str = "-ERR Teleport: this session is for database user \"alice\"; AUTH as \"bob\" is not allowed (connect with --db-user to use another user)\r\n";

    #[test]
    fn own_connection_answers_auth_and_refuses_what_breaks_the_engine() {
        let mut s = SessionState::own(Some("alice".into()), Protocol::Resp2, false);
        let (a, e) = step(&mut s, "AUTH alice pw");
        assert_eq!(a, answer("+OK\r\n"));
        assert_eq!(
            (e.args, e.refused),
            (vec!["******".into(), "******".into()], None)
        );
        let (a, e) = step(&mut s, "auth bob pw");
        assert_eq!(a, answer(NOT_ALICE));
        assert_eq!(e.name, "AUTH");
        assert!(e
            .refused
            .unwrap()
            .starts_with("this session is for database user"));
        assert_eq!(
            act(&mut s, "AUTH a b c"),
            answer("-ERR wrong number of arguments for 'auth' command\r\n")
        );
        let (a, e) = step(&mut s, "RESET");
        assert_eq!(a, answer("-ERR Teleport: RESET is not supported\r\n"));
        assert_eq!(e.refused.as_deref(), Some("RESET is not supported"));
        assert_eq!(
            act(&mut s, "client reply off"),
            answer("-ERR Teleport: CLIENT REPLY is not supported\r\n")
        );
        assert_eq!(act(&mut s, "CLIENT LIST"), forward(true, None, false));
        assert_eq!(act(&mut s, "GET k"), forward(true, None, false));
        assert!(s.counting());
    }

    #[test]
    fn hello_switches_the_protocol_unless_refused() {
        let mut s = SessionState::own(Some("alice".into()), Protocol::Resp2, false);
        assert_eq!(act(&mut s, "HELLO 3 AUTH bob pw"), answer(NOT_ALICE));
        assert_eq!(s.protocol(), Protocol::Resp2);
        assert_eq!(act(&mut s, "HELLO 3"), forward(true, None, false));
        assert_eq!(s.protocol(), Protocol::Resp3);
        let (a, e) = step(&mut s, "HELLO 2 AUTH alice pw SETNAME n");
        assert_eq!(
            a,
            Action::Rewrite {
                bytes: Frame::command(["HELLO", "2", "SETNAME", "n"]).to_bytes(),
                fix: None
            }
        );
        assert_eq!(e.args, ["2", "AUTH", "******", "******", "SETNAME", "n"]);
        assert_eq!(s.protocol(), Protocol::Resp2);
        // Neither 2 nor 3: the server answers; the protocol stays.
        assert_eq!(act(&mut s, "HELLO 4"), forward(true, None, false));
        assert_eq!(s.protocol(), Protocol::Resp2);
    }

    #[test]
    fn resp2_subscriptions_and_monitor_end_reply_counting() {
        for first in ["SUBSCRIBE a", "PSUBSCRIBE p*", "MONITOR", "UNSUBSCRIBE"] {
            let mut s = SessionState::own(None, Protocol::Resp2, false);
            assert_eq!(act(&mut s, first), forward(false, None, false), "{first}");
            assert!(!s.counting(), "{first}");
        }
        // Without channels, one (counted) error.
        let mut s = SessionState::own(None, Protocol::Resp3, false);
        assert_eq!(act(&mut s, "SUBSCRIBE"), forward(true, None, false));
        // RESP3: confirmations are push frames; counting goes on.
        assert_eq!(act(&mut s, "SUBSCRIBE a b"), forward(false, None, false));
        assert_eq!(act(&mut s, "GET k"), forward(true, None, false));
        assert_eq!(act(&mut s, "UNSUBSCRIBE"), forward(false, None, false));
        assert!(s.counting());
    }

    #[test]
    fn a_resp2_subscriber_with_expiring_credentials_is_translated() {
        let mut s = SessionState::own(None, Protocol::Resp2, true);
        // The backend switches to RESP3 first, then the same command goes.
        backend_switch(&mut s, "SUBSCRIBE a b", true);
        assert!(translated(&s));
        assert_eq!(act(&mut s, "SUBSCRIBE a b"), forward(false, None, false));
        assert!(s.counting());
        // RESP2's rules for a subscribed connection, applied here.
        assert_eq!(
            act(&mut s, "PING"),
            forward(true, Some(ReplyFix::Pong), false)
        );
        assert_eq!(
            act(&mut s, "ping hi"),
            forward(true, Some(ReplyFix::Pong), false)
        );
        assert_eq!(
            act(&mut s, "PING a b"),
            forward(true, Some(ReplyFix::AsIs), false)
        );
        let (a, e) = step(&mut s, "Get k");
        assert_eq!(a, answer("-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"));
        assert_eq!(e.refused, None, "the server's own refusal");
        assert_eq!(
            act(&mut s, "RESET"),
            answer("-ERR Teleport: RESET is not supported\r\n")
        );
        // One channel left: still subscribed.
        assert_eq!(act(&mut s, "UNSUBSCRIBE a"), forward(false, None, false));
        // The last one: back to RESP2 after it.
        assert_eq!(act(&mut s, "UNSUBSCRIBE b"), forward(false, None, true));
        s.backend_switched(Protocol::Resp2, true);
        assert!(!translated(&s));
        assert_eq!(act(&mut s, "GET k"), forward(true, None, false));
        // A new subscription switches again.
        backend_switch(&mut s, "PSUBSCRIBE p*", true);
        assert_eq!(act(&mut s, "PSUBSCRIBE p*"), forward(false, None, false));
        // Commands while translated but not subscribed get their replies
        // reshaped as they are.
        assert_eq!(act(&mut s, "PUNSUBSCRIBE"), forward(false, None, true));
        // The server refused the switch back: translation goes on.
        s.backend_switched(Protocol::Resp2, false);
        assert!(translated(&s));
        assert_eq!(
            act(&mut s, "GET k"),
            forward(true, Some(ReplyFix::AsIs), false)
        );
        assert_eq!(
            act(&mut s, "HELLO 3 AUTH u p"),
            Action::Rewrite {
                bytes: Frame::command(["HELLO", "3"]).to_bytes(),
                fix: Some(ReplyFix::AsIs)
            }
        );
    }

    #[test]
    fn a_refused_switch_leaves_a_plain_resp2_subscriber() {
        let mut s = SessionState::own(None, Protocol::Resp2, true);
        backend_switch(&mut s, "SUBSCRIBE a", false);
        assert_eq!(act(&mut s, "SUBSCRIBE a"), forward(false, None, false));
        assert!(!s.counting());
        // No more switches once replies are not counted.
        assert_eq!(act(&mut s, "SUBSCRIBE b"), forward(false, None, false));
    }

    #[test]
    fn no_switch_inside_a_transaction_or_without_renewal() {
        let mut s = SessionState::own(None, Protocol::Resp2, true);
        assert_eq!(act(&mut s, "MULTI"), forward(true, None, false));
        assert!(s.in_multi());
        // Queued by the server: no engine command may go in between.
        assert_eq!(act(&mut s, "SUBSCRIBE a"), forward(false, None, false));
        let mut s = SessionState::own(None, Protocol::Resp2, true);
        assert_eq!(act(&mut s, "multi"), forward(true, None, false));
        assert_eq!(act(&mut s, "EXEC"), forward(true, None, false));
        assert!(!s.in_multi());
        assert_eq!(act(&mut s, "MULTI"), forward(true, None, false));
        assert_eq!(act(&mut s, "DISCARD"), forward(true, None, false));
        assert!(!s.in_multi());
        s.reauth_ended();
        assert_eq!(act(&mut s, "SUBSCRIBE a"), forward(false, None, false));
        assert!(!s.counting());
        // A RESP3 client needs no switch.
        let mut s = SessionState::own(None, Protocol::Resp3, true);
        assert_eq!(act(&mut s, "SUBSCRIBE a"), forward(false, None, false));
    }

    fn known() -> Known {
        Known {
            setinfo: Probe::Supported,
            maint: Probe::Unknown,
        }
    }

    #[test]
    fn the_shared_connection_serves_key_commands_and_answers_setup() {
        let mut s = SessionState::shared(Some("alice".into()), known());
        assert_eq!(act(&mut s, "GET k"), forward(true, None, false));
        assert_eq!(act(&mut s, "set k v"), forward(true, None, false));
        assert_eq!(
            act(&mut s, "AUTH pw"),
            answer(NOT_ALICE.replace("bob", "default").as_str())
        );
        assert_eq!(act(&mut s, "AUTH alice pw"), answer("+OK\r\n"));
        assert_eq!(act(&mut s, "HELLO 3 AUTH bob pw"), answer(NOT_ALICE));
        assert_eq!(act(&mut s, "CLIENT SETNAME app"), answer("+OK\r\n"));
        assert_eq!(act(&mut s, "CLIENT GETNAME"), answer("$3\r\napp\r\n"));
        assert_eq!(act(&mut s, "CLIENT SETINFO LIB-NAME x"), answer("+OK\r\n"));
        // What only a connection of the session's own can serve.
        for line in [
            "CLIENT LIST",
            "CLIENT MAINT_NOTIFICATIONS ON",
            "HELLO 2",
            "HELLO 3 X",
            "MULTI",
            "SUBSCRIBE a",
            "SELECT 1",
            "BLPOP k 0",
            "NOSUCHCOMMAND",
        ] {
            assert_eq!(act(&mut s, line), Action::MoveToOwn, "{line}");
        }
        assert_eq!(
            act(&mut s, "HELLO 3 AUTH alice pw SETNAME n"),
            Action::SharedResp3 {
                name: Some(b"n".to_vec())
            }
        );
        // Not moved yet: the driver reports the RESP3 connection.
        assert_eq!(s.protocol(), Protocol::Resp2);
        s.shared_resp3(Some(b"n"), known());
        assert_eq!(s.protocol(), Protocol::Resp3);
        assert_eq!(act(&mut s, "CLIENT GETNAME"), answer("$1\r\nn\r\n"));
        assert_eq!(act(&mut s, "CLIENT SETNAME"), Action::MoveToOwn);
        assert_eq!(act(&mut s, "CLIENT SETNAME "), answer("+OK\r\n"));
        assert_eq!(act(&mut s, "CLIENT GETNAME"), answer("_\r\n"));
        let setup = s.setup().unwrap();
        assert!(setup.resp3);
        assert_eq!(setup.replay().1, 2, "HELLO 3 and the library name");
        // On a connection of its own, it speaks RESP3 still.
        let mut s = s.into_own(true);
        assert!(s.setup().is_none());
        assert_eq!(s.protocol(), Protocol::Resp3);
        assert_eq!(act(&mut s, "CLIENT LIST"), forward(true, None, false));
        // RESP3: no backend switch for a subscriber.
        assert_eq!(act(&mut s, "SUBSCRIBE a"), forward(false, None, false));
        assert!(s.counting());
    }

    #[test]
    fn the_shared_connection_follows_what_its_server_knows() {
        let mut s = SessionState::shared(None, known());
        let old = || Known {
            setinfo: Probe::Unsupported(Bytes::from_static(b"ERR unknown subcommand 'SETINFO'")),
            maint: Probe::Unknown,
        };
        s.shared_reconnected(old());
        assert_eq!(
            act(&mut s, "CLIENT setinfo LIB-VER 1"),
            answer("-ERR unknown subcommand 'setinfo'\r\n")
        );
        s.shared_resp3(None, known());
        assert_eq!(act(&mut s, "CLIENT SETINFO LIB-VER 1"), answer("+OK\r\n"));
    }

    #[test]
    fn a_cluster_session_routes_or_refuses() {
        let mut s = SessionState::cluster(Some("alice".into()));
        assert_eq!(act(&mut s, "AUTH alice pw"), answer("+OK\r\n"));
        assert_eq!(act(&mut s, "AUTH bob pw"), answer(NOT_ALICE));
        assert_eq!(act(&mut s, "HELLO 3 AUTH bob pw"), answer(NOT_ALICE));
        assert_eq!(
            act(&mut s, "HELLO 3 AUTH alice pw"),
            Action::Route(Route::Hello)
        );
        assert_eq!(act(&mut s, "QUIT"), Action::Quit);
        assert_eq!(act(&mut s, "PING"), Action::Route(Route::Any));
        assert!(matches!(
            act(&mut s, "GET k"),
            Action::Route(Route::Keys(..))
        ));
        assert_eq!(act(&mut s, "SELECT 0"), answer("+OK\r\n"));
        let (a, e) = step(&mut s, "MULTI");
        assert_eq!(
            a,
            answer("-ERR Teleport: MULTI is not supported in cluster mode\r\n")
        );
        assert_eq!(
            e.refused.as_deref(),
            Some("MULTI is not supported in cluster mode")
        );
        // A cluster session keeps no transaction or subscription mode.
        assert!(!s.in_multi());
        assert!(s.counting());
    }

    #[test]
    fn secrets_are_hidden_from_the_audit() {
        let ev = |name: &str, a: &str| audit_event(name, &args(a)).args.join(" ");
        assert_eq!(
            ev("HELLO", "3 AUTH u p SETNAME n"),
            "3 AUTH ****** ****** SETNAME n"
        );
        assert_eq!(
            ev("MIGRATE", "h 1 k 0 5 AUTH pw KEYS a"),
            "h 1 k 0 5 AUTH ****** KEYS a"
        );
        assert_eq!(
            ev("MIGRATE", "h 1 k 0 5 AUTH2 u pw"),
            "h 1 k 0 5 AUTH2 ****** ******"
        );
        assert_eq!(
            ev("CONFIG", "set requirepass x maxmemory 1"),
            "set requirepass ****** maxmemory 1"
        );
        assert_eq!(ev("GET", "k"), "k");
    }

    #[test]
    fn hello_auth_is_read_as_redis_reads_it() {
        let alice = Some("alice");
        // Another user is refused with AUTH's own refusal.
        let refused = hello_refusal(&args("3 AUTH bob pw"), alice).unwrap();
        assert_eq!(refused, local_auth(&args("bob pw"), alice));
        assert!(String::from_utf8_lossy(&refused)
            .starts_with("-ERR Teleport: this session is for database user \"alice\""));
        assert!(hello_refusal(&args("3 auth bob pw SETNAME n"), alice).is_some());
        assert!(hello_refusal(&args("2 SETNAME n AUTH bob pw"), alice).is_some());
        // Any AUTH option naming another user is refused (Redis uses the last).
        assert!(hello_refusal(&args("3 AUTH alice pw AUTH bob pw"), alice).is_some());
        assert_eq!(hello_refusal(&args("3 AUTH alice pw"), alice), None);
        assert_eq!(hello_refusal(&args("3 AUTH bob pw"), None), None);
        // Not an AUTH option as Redis reads HELLO: the server's syntax or
        // version error answers it, before any authentication.
        for other in [
            "3 AUTH bob",
            "AUTH bob pw",
            "3 SETNAME AUTH bob pw",
            "3 X AUTH bob pw",
        ] {
            assert_eq!(hello_refusal(&args(other), alice), None, "{other}");
            assert_eq!(hello_without_auth(&args(other)), None, "{other}");
        }
        assert_eq!(
            hello_without_auth(&args("3 AUTH alice pw SETNAME n AUTH a b")),
            Some(Frame::command(["HELLO", "3", "SETNAME", "n"]).to_bytes())
        );
        assert_eq!(
            hello_without_auth(&args("3 AUTH alice pw BAD")),
            Some(Frame::command(["HELLO", "3", "BAD"]).to_bytes())
        );
        assert_eq!(hello_without_auth(&args("3 SETNAME n")), None);
    }
}
