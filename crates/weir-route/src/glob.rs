//! Glob patterns (`a.*`, `a.**`, `{a,b}.c`) compiled to a small automaton.
//!
//! Fluentd turns a glob into a Ruby regex and runs it on a backtracking engine. That regex
//! needs a look-ahead (`a.**` must see a `.` or the end of the tag after `a`), which the
//! `regex` crate does not offer, so weir compiles the same meaning into its own tiny
//! instruction set and runs it as a Thompson-style state set.
//!
//! # Meaning of each piece (the same as Fluentd v1)
//!
//! A pattern is read left to right. A `.` is held back until the next character is seen:
//!
//! - `*` matches any run of characters without a `.` (possibly empty).
//! - `**` matches any run of characters except a line feed. When a held-back `.` comes right
//!   before it, that `.` is not required: instead the tag must have a `.` or end there. So
//!   `a.**` matches `a`, `a.b` and `a.b.c` but not `ab`.
//! - `**.` (followed by a dot) matches either the start of the tag, or any run of characters
//!   ending in `.`. So `**.a` matches `a` and `x.y.a` but not `xa`.
//! - `{x,y,z}` matches any one of the comma-separated sub-patterns; braces nest. Outside
//!   braces a `,` is a literal comma.
//! - `\c` matches the character `c` literally.
//! - Every other character matches itself.
//! - A `.` left over at the very end of the pattern is dropped, and so is a lone trailing
//!   `\` (Fluentd does the same: `a.` matches `a`).
//! - The whole tag must be matched, except that one final line feed may be left over
//!   (Ruby's `\Z`).
//!
//! The exact pattern `**` matches every tag, including ones that contain line feeds.
//!
//! # Cost
//!
//! The compiled program has a number of instructions proportional to the pattern length
//! (`m`). Matching walks the tag once; at each character every instruction is visited at most
//! once (a per-step mark prevents repeats), so a match costs `O(n * m)` time for a tag of `n`
//! characters and `O(m)` memory, whatever the nesting of `**` and `{}`. No backtracking.

use crate::PatternError;

/// How deeply `{}` may nest. Compiling is recursive in the nesting depth, so it is bounded
/// to keep hostile patterns from exhausting the stack.
pub const MAX_BRACE_DEPTH: usize = 32;

/// One piece of a parsed glob, before compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// One literal character.
    Lit(char),
    /// `*`: any run of characters other than `.`.
    NotDotStar,
    /// `**` not followed by `.`: any run of characters other than a line feed.
    AnyStar,
    /// The held-back `.` before `**`: the tag must end here or continue with `.`.
    DotOrEnd,
    /// `**.`: either the start of the tag, or any run of characters (no line feed) ending in `.`.
    StarStarDot,
    /// `{x,y}`: any one of the alternatives.
    Alt(Vec<Vec<Node>>),
}

/// Parses a glob into a sequence of nodes, following Fluentd's reading rules.
pub(crate) fn parse(pattern: &str) -> Result<Vec<Node>, PatternError> {
    let chars: Vec<(usize, char)> = pattern.char_indices().collect();
    // `top` is the top level. Each open `{` is a `Group`: where it opened, its finished
    // alternatives, and the alternative being read now.
    let mut top: Vec<Node> = Vec::new();
    let mut open: Vec<Group> = Vec::new();
    let mut escape = false;
    let mut dot = false;
    let mut i = 0;
    while let Some(&(pos, c)) = chars.get(i) {
        let next = chars.get(i + 1).map(|&(_, c)| c);
        let next2 = chars.get(i + 2).map(|&(_, c)| c);
        if escape {
            current(&mut top, &mut open).push(Node::Lit(c));
            escape = false;
            i += 1;
            continue;
        }
        if c == '*' && next == Some('*') {
            if dot {
                current(&mut top, &mut open).push(Node::DotOrEnd);
                dot = false;
            }
            if next2 == Some('.') {
                current(&mut top, &mut open).push(Node::StarStarDot);
                i += 3;
            } else {
                current(&mut top, &mut open).push(Node::AnyStar);
                i += 2;
            }
            continue;
        }
        if dot {
            current(&mut top, &mut open).push(Node::Lit('.'));
            dot = false;
        }
        match c {
            '\\' => escape = true,
            '.' => dot = true,
            '*' => current(&mut top, &mut open).push(Node::NotDotStar),
            '{' => {
                if open.len() >= MAX_BRACE_DEPTH {
                    return Err(PatternError::TooDeeplyNested {
                        pattern: pattern.to_owned(),
                        position: pos,
                        limit: MAX_BRACE_DEPTH,
                    });
                }
                open.push(Group {
                    position: pos,
                    done: Vec::new(),
                    current: Vec::new(),
                });
            }
            '}' => match open.pop() {
                Some(mut group) => {
                    group.done.push(group.current);
                    let node = Node::Alt(group.done);
                    match open.last_mut() {
                        Some(outer) => outer.current.push(node),
                        None => top.push(node),
                    }
                }
                None => {
                    return Err(PatternError::UnmatchedBrace {
                        pattern: pattern.to_owned(),
                        position: pos,
                    })
                }
            },
            ',' => match open.last_mut() {
                Some(group) => {
                    let finished = std::mem::take(&mut group.current);
                    group.done.push(finished);
                }
                None => current(&mut top, &mut open).push(Node::Lit(',')),
            },
            other => current(&mut top, &mut open).push(Node::Lit(other)),
        }
        i += 1;
    }
    if let Some(group) = open.first() {
        return Err(PatternError::UnclosedBrace {
            pattern: pattern.to_owned(),
            position: group.position,
        });
    }
    // A held-back `.` or `\` at the end is dropped, as in Fluentd.
    Ok(top)
}

/// The alternative being read: in the innermost open `{`, or the top level.
fn current<'a>(top: &'a mut Vec<Node>, open: &'a mut [Group]) -> &'a mut Vec<Node> {
    match open.last_mut() {
        Some(group) => &mut group.current,
        None => top,
    }
}

/// A `{` being read.
struct Group {
    /// Byte offset of the `{`, for errors.
    position: usize,
    /// Alternatives already ended by a `,`.
    done: Vec<Vec<Node>>,
    /// The alternative being read.
    current: Vec<Node>,
}

/// One instruction of the compiled automaton.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inst {
    /// Consume this character.
    Char(char),
    /// Consume any character except `.`.
    NotDot,
    /// Consume any character except a line feed.
    NotNewline,
    /// Continue at both targets.
    Split(usize, usize),
    /// Continue at the target.
    Jmp(usize),
    /// Continue only at the start of the tag.
    AssertStart,
    /// Continue only at the end of the tag or before a `.`.
    AssertDotOrEnd,
    /// Continue only at the end of the tag or before a final line feed.
    AssertEnd,
    /// The tag matches.
    Match,
}

/// A compiled glob: a list of instructions run as a set of states.
#[derive(Debug, Clone)]
pub(crate) struct Program {
    insts: Vec<Inst>,
}

impl Program {
    /// Compiles parsed nodes into a program that matches the whole tag.
    pub(crate) fn compile(nodes: &[Node]) -> Program {
        let mut insts = Vec::new();
        emit_seq(&mut insts, nodes);
        insts.push(Inst::AssertEnd);
        insts.push(Inst::Match);
        Program { insts }
    }

    /// Whether the program matches the whole tag (see the module documentation).
    pub(crate) fn matches(&self, tag: &str) -> bool {
        let n = self.insts.len();
        let mut current = StateSet::new(n);
        let mut next = StateSet::new(n);
        let mut stack = Vec::new();
        // The pattern is anchored at the start: there is a single starting thread.
        if self.add(&mut current, &mut stack, 0, Context::at(tag, 0)) {
            return true;
        }
        for (pos, c) in tag.char_indices() {
            let ctx = Context::at(tag, pos + c.len_utf8());
            next.clear();
            for &pc in &current.dense {
                let step = match self.insts.get(pc) {
                    Some(Inst::Char(x)) => *x == c,
                    Some(Inst::NotDot) => c != '.',
                    Some(Inst::NotNewline) => c != '\n',
                    _ => false,
                };
                if step && self.add(&mut next, &mut stack, pc + 1, ctx) {
                    return true;
                }
            }
            if next.dense.is_empty() {
                return false;
            }
            std::mem::swap(&mut current, &mut next);
        }
        false
    }

    /// Adds `pc` and everything reachable from it without consuming a character.
    /// Returns true when `Match` is reached.
    fn add(&self, set: &mut StateSet, stack: &mut Vec<usize>, pc: usize, ctx: Context) -> bool {
        stack.clear();
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            if !set.insert(pc) {
                continue;
            }
            match self.insts.get(pc) {
                Some(Inst::Split(a, b)) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Some(Inst::Jmp(a)) => stack.push(*a),
                Some(Inst::AssertStart) => {
                    if ctx.at_start {
                        stack.push(pc + 1);
                    }
                }
                Some(Inst::AssertDotOrEnd) => {
                    if matches!(ctx.next, None | Some('.')) {
                        stack.push(pc + 1);
                    }
                }
                Some(Inst::AssertEnd) => {
                    if ctx.at_end {
                        stack.push(pc + 1);
                    }
                }
                Some(Inst::Match) => return true,
                Some(Inst::Char(_) | Inst::NotDot | Inst::NotNewline) | None => {}
            }
        }
        false
    }
}

/// What the zero-width instructions may look at, at one position of the tag.
#[derive(Debug, Clone, Copy)]
struct Context {
    at_start: bool,
    next: Option<char>,
    at_end: bool,
}

impl Context {
    /// The context at byte offset `pos` (always a character boundary) of `tag`.
    fn at(tag: &str, pos: usize) -> Context {
        let rest = tag.get(pos..).unwrap_or("");
        Context {
            at_start: pos == 0,
            next: rest.chars().next(),
            at_end: rest.is_empty() || rest == "\n",
        }
    }
}

/// A set of instruction indexes with O(1) insert and clear, iterated in insertion order.
struct StateSet {
    dense: Vec<usize>,
    present: Vec<bool>,
}

impl StateSet {
    fn new(n: usize) -> StateSet {
        StateSet {
            dense: Vec::with_capacity(n),
            present: vec![false; n],
        }
    }

    fn insert(&mut self, pc: usize) -> bool {
        match self.present.get_mut(pc) {
            Some(seen) if !*seen => {
                *seen = true;
                self.dense.push(pc);
                true
            }
            _ => false,
        }
    }

    fn clear(&mut self) {
        for &pc in &self.dense {
            if let Some(seen) = self.present.get_mut(pc) {
                *seen = false;
            }
        }
        self.dense.clear();
    }
}

fn emit_seq(insts: &mut Vec<Inst>, nodes: &[Node]) {
    for node in nodes {
        emit(insts, node);
    }
}

fn emit_star(insts: &mut Vec<Inst>, one: Inst) {
    let start = insts.len();
    insts.push(Inst::Split(start + 1, start + 3));
    insts.push(one);
    insts.push(Inst::Jmp(start));
}

fn emit(insts: &mut Vec<Inst>, node: &Node) {
    match node {
        Node::Lit(c) => insts.push(Inst::Char(*c)),
        Node::NotDotStar => emit_star(insts, Inst::NotDot),
        Node::AnyStar => emit_star(insts, Inst::NotNewline),
        Node::DotOrEnd => insts.push(Inst::AssertDotOrEnd),
        Node::StarStarDot => {
            // Split(run, start); run: .* '.' Jmp(end); start: AssertStart; end:
            let split = insts.len();
            insts.push(Inst::Split(split + 1, 0));
            emit_star(insts, Inst::NotNewline);
            insts.push(Inst::Char('.'));
            let jmp = insts.len();
            insts.push(Inst::Jmp(0));
            let other = insts.len();
            insts.push(Inst::AssertStart);
            let end = insts.len();
            patch(insts, split, Inst::Split(split + 1, other));
            patch(insts, jmp, Inst::Jmp(end));
        }
        Node::Alt(alternatives) => {
            // Split(a1, s2); a1...; Jmp(end); s2: Split(a2, s3); ...; last alternative.
            let mut jumps = Vec::new();
            let count = alternatives.len();
            for (k, alternative) in alternatives.iter().enumerate() {
                if k + 1 < count {
                    let split = insts.len();
                    insts.push(Inst::Split(split + 1, 0));
                    emit_seq(insts, alternative);
                    jumps.push(insts.len());
                    insts.push(Inst::Jmp(0));
                    let after = insts.len();
                    patch(insts, split, Inst::Split(split + 1, after));
                } else {
                    emit_seq(insts, alternative);
                }
            }
            let end = insts.len();
            for jump in jumps {
                patch(insts, jump, Inst::Jmp(end));
            }
        }
    }
}

fn patch(insts: &mut [Inst], at: usize, inst: Inst) {
    if let Some(slot) = insts.get_mut(at) {
        *slot = inst;
    }
}
