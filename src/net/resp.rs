//! Packing commands in RESP into reused buffers (no allocation once warm),
//! with where each command's name and key stand in the buffer.

use std::io::Write;
use std::ops::Range;

/// Where one packed command's name and key (its first two arguments)
/// stand in the buffer it was packed into: what is reported when Redis
/// refuses the command, and what a lost reply is checked with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Span {
    name: Option<(usize, usize)>,
    key: Option<(usize, usize)>,
}

impl Span {
    /// The command's name and key in `buf`, the buffer the span was
    /// recorded for; `None` for a command without a key.
    pub(crate) fn name_key<'a>(&self, buf: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
        let get = |r: Option<(usize, usize)>| r.and_then(|(a, b)| buf.get(Range { start: a, end: b }));
        Some((get(self.name)?, get(self.key)?))
    }
}

/// Packs commands in RESP into a reused buffer, recording each command's
/// [`Span`].
#[derive(Default)]
pub(crate) struct Packer {
    pub(crate) buf: Vec<u8>,
    pub(crate) commands: usize,
    /// One a command, in order.
    pub(crate) spans: Vec<Span>,
    /// How many arguments of the last command are packed so far.
    arg: usize,
}

impl Packer {
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.commands = 0;
        self.spans.clear();
        self.arg = 0;
    }

    pub(crate) fn array(&mut self, n: usize) {
        self.commands += 1;
        self.spans.push(Span::default());
        self.arg = 0;
        // Writing to a `Vec` cannot fail.
        let _ = write!(self.buf, "*{n}\r\n");
    }

    pub(crate) fn bulk(&mut self, b: &[u8]) {
        push_bulk(&mut self.buf, b);
        let end = self.buf.len() - 2;
        self.note(self.arg, (end - b.len(), end));
        self.arg += 1;
    }

    /// Records argument `arg` of the last command, at `at` in the buffer,
    /// if it is its name or its key.
    fn note(&mut self, arg: usize, at: (usize, usize)) {
        let Some(span) = self.spans.last_mut() else { return };
        match arg {
            0 => span.name = Some(at),
            1 => span.key = Some(at),
            _ => {}
        }
    }

    pub(crate) fn cmd(&mut self, args: &[&[u8]]) {
        self.array(args.len());
        for a in args {
            self.bulk(a);
        }
    }

    /// One command: `head` followed by the arguments collected in `args`.
    pub(crate) fn cmd_args(&mut self, head: &[&[u8]], args: &Args) {
        self.array(head.len() + args.n);
        for h in head {
            self.bulk(h);
        }
        let base = self.buf.len();
        for (i, &(a, b)) in args.first.iter().take(args.n.min(2)).enumerate() {
            self.note(self.arg + i, (base + a, base + b));
        }
        self.arg += args.n;
        self.buf.extend_from_slice(&args.buf);
    }

    /// Appends whole commands packed elsewhere: `bytes`, which stood at
    /// `origin` in the buffer `spans` (one a command in `bytes`) were
    /// recorded for.
    pub(crate) fn extend(&mut self, bytes: &[u8], spans: &[Span], origin: usize) {
        let base = self.buf.len();
        let at = |r: Option<(usize, usize)>| r.map(|(a, b)| (a - origin + base, b - origin + base));
        self.buf.extend_from_slice(bytes);
        self.spans.extend(spans.iter().map(|s| Span { name: at(s.name), key: at(s.key) }));
        self.commands += spans.len();
        self.arg = 0;
    }

    /// Appends the commands of another packer.
    pub(crate) fn append(&mut self, other: &Packer) {
        self.extend(&other.buf, &other.spans, 0);
    }
}

/// The arguments of one variadic command (`MSET`, `SADD`, `RPUSH`, …),
/// packed as they come, for commands whose length is known only at the end.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) buf: Vec<u8>,
    pub(crate) n: usize,
    /// Where the first two arguments stand in `buf`.
    first: [(usize, usize); 2],
}

impl Args {
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.n = 0;
    }

    pub(crate) fn bulk(&mut self, b: &[u8]) {
        push_bulk(&mut self.buf, b);
        if let Some(at) = self.first.get_mut(self.n) {
            let end = self.buf.len() - 2;
            *at = (end - b.len(), end);
        }
        self.n += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// One RESP bulk string: `$len\r\nbytes\r\n`.
fn push_bulk(buf: &mut Vec<u8>, b: &[u8]) {
    let _ = write!(buf, "${}\r\n", b.len());
    buf.extend_from_slice(b);
    buf.extend_from_slice(b"\r\n");
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The name and the key of the `n`-th command (from 0) in packed RESP
    /// `buf`, read back from the bytes: what the recorded spans are checked
    /// against.
    pub(crate) fn parse_name_key(buf: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
        /// Reads one `{tag}{number}\r\n` header line.
        fn line(rest: &mut &[u8], tag: u8) -> Option<usize> {
            let end = rest.windows(2).position(|w| w == b"\r\n")?;
            let (head, tail) = rest.split_at(end);
            *rest = &tail[2..];
            let (&t, digits) = head.split_first()?;
            if t != tag {
                return None;
            }
            std::str::from_utf8(digits).ok()?.parse().ok()
        }
        let mut rest = buf;
        for i in 0..=n {
            let argc = line(&mut rest, b'*')?;
            let mut name: &[u8] = &[];
            for a in 0..argc {
                let len = line(&mut rest, b'$')?;
                let arg = rest.get(..len)?;
                rest = rest.get(len + 2..)?;
                if i == n && a == 0 {
                    name = arg;
                }
                if i == n && a == 1 {
                    return Some((name, arg));
                }
            }
            if i == n {
                return None;
            }
        }
        None
    }

    /// Every span names what the bytes of `buf` hold, and there is one a
    /// command.
    pub(crate) fn assert_spans_match(buf: &[u8], spans: &[Span]) {
        for (i, span) in spans.iter().enumerate() {
            assert_eq!(span.name_key(buf), parse_name_key(buf, i), "command {i}");
        }
        assert_eq!(parse_name_key(buf, spans.len()), None, "a command without a span");
    }

    #[test]
    fn command_names_and_keys() {
        let mut p = Packer::default();
        p.cmd(&[b"MULTI"]);
        p.cmd(&[b"SADD", b"t:index:orders", b"O-1"]);
        p.cmd(&[b"RPUSH", b"t:orders:O-1:events", b"x"]);
        assert_eq!(p.spans[0].name_key(&p.buf), None);
        assert_eq!(p.spans[1].name_key(&p.buf), Some((&b"SADD"[..], &b"t:index:orders"[..])));
        assert_eq!(p.spans[2].name_key(&p.buf), Some((&b"RPUSH"[..], &b"t:orders:O-1:events"[..])));
        assert_eq!(p.spans.len(), 3);
        assert_spans_match(&p.buf, &p.spans);
    }

    #[test]
    fn spans_of_variadic_and_appended_commands() {
        let mut a = Args::default();
        let mut p = Packer::default();
        p.cmd(&[b"MULTI"]);
        // The key in the arguments (MSET), or in the head (SADD).
        a.bulk(b"t:positions:P-1");
        a.bulk(b"v");
        a.bulk(b"t:positions:P-2");
        p.cmd_args(&[b"MSET"], &a);
        a.clear();
        a.bulk(b"P-1");
        p.cmd_args(&[b"SADD", b"t:index:positions"], &a);
        a.clear();
        p.cmd_args(&[b"DEL"], &a); // no key at all
        let mut hb = Packer::default();
        hb.cmd(&[b"SET", b"t:heartbeat:main", b"{}"]);
        p.append(&hb);
        assert_eq!(p.spans[1].name_key(&p.buf), Some((&b"MSET"[..], &b"t:positions:P-1"[..])));
        assert_eq!(p.spans[2].name_key(&p.buf), Some((&b"SADD"[..], &b"t:index:positions"[..])));
        assert_eq!(p.spans[3].name_key(&p.buf), None);
        assert_eq!(p.spans[4].name_key(&p.buf), Some((&b"SET"[..], &b"t:heartbeat:main"[..])));
        assert_eq!(p.commands, 5);
        assert_spans_match(&p.buf, &p.spans);

        // The commands after MULTI moved behind others.
        let mut q = Packer::default();
        q.cmd(&[b"MULTI"]);
        q.cmd(&[b"SADD", b"t:index:orders", b"O-9"]);
        let multi = b"*1\r\n$5\r\nMULTI\r\n".len();
        q.extend(&p.buf[multi..], &p.spans[1..], multi);
        assert_eq!(q.commands, 6);
        assert_eq!(q.spans[2].name_key(&q.buf), Some((&b"MSET"[..], &b"t:positions:P-1"[..])));
        assert_spans_match(&q.buf, &q.spans);
    }

    #[test]
    fn packer_resp() {
        let mut p = Packer::default();
        p.cmd(&[b"SET", b"k", b"v"]);
        assert_eq!(p.buf, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
        assert_eq!(p.commands, 1);
    }

    #[test]
    fn packer_key_of() {
        let mut p = Packer::default();
        p.cmd(&[b"MULTI"]);
        p.cmd(&[b"SET", b"k\r\n1", b"v"]);
        p.array(4);
        p.bulk(b"RPUSH");
        p.bulk(b"k2");
        p.bulk(b"a");
        p.bulk(b"b");
        p.cmd(&[b"EXEC"]);
        fn key(p: &Packer, i: usize) -> Option<&[u8]> {
            p.spans.get(i)?.name_key(&p.buf).map(|(_, k)| k)
        }
        assert_eq!(key(&p, 0), None);
        assert_eq!(key(&p, 1), Some(&b"k\r\n1"[..]));
        assert_eq!(key(&p, 2), Some(&b"k2"[..]));
        assert_eq!(key(&p, 3), None);
        assert_eq!(key(&p, 4), None);
        assert_spans_match(&p.buf, &p.spans);
        // A span past the end of a torn buffer is not a panic.
        let mut torn = Packer::default();
        torn.cmd(&[b"SET", b"k", b"v"]);
        torn.buf.truncate(5);
        assert_eq!(torn.spans[0].name_key(&torn.buf), None);
    }

    #[test]
    fn variadic_args() {
        let mut a = Args::default();
        a.bulk(b"k");
        a.bulk(b"");
        let mut p = Packer::default();
        p.cmd_args(&[b"SADD", b"i"], &a);
        assert_eq!(p.buf, b"*4\r\n$4\r\nSADD\r\n$1\r\ni\r\n$1\r\nk\r\n$0\r\n\r\n");
        assert_eq!(p.commands, 1);
    }
}
