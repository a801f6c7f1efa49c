//! A minimal compress policy: keep system messages, then the most recent
//! messages that fit the budget; no summary.

use wingate::{CompressDecision, CompressRequest, Error, Policy, Role};

fn compress(_: &mut (), req: &CompressRequest) -> Result<CompressDecision, Error> {
    let budget = req.budget_tokens as u64;
    let mut keep = vec![false; req.messages.len()];
    let mut used = 0u64;
    for (i, m) in req.messages.iter().enumerate() {
        if m.role == Role::System && used + m.tokens as u64 <= budget {
            keep[i] = true;
            used += m.tokens as u64;
        }
    }
    for (i, m) in req.messages.iter().enumerate().rev() {
        if keep[i] {
            continue;
        }
        if used + m.tokens as u64 > budget {
            break;
        }
        keep[i] = true;
        used += m.tokens as u64;
    }
    let keep = keep.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i as u32).collect();
    Ok(CompressDecision { keep, summary: String::new(), tokens: used as u32 })
}

pub fn policy() -> Policy<()> {
    Policy::new(()).compress(compress)
}

wingate::export!(policy);

#[cfg(test)]
mod tests {
    use super::*;
    use wingate::Message;

    #[test]
    fn keeps_system_then_recent() {
        let m = |id: &'static str, role, tokens| Message { id: id.into(), role, tokens, text: "x".into() };
        let req = CompressRequest {
            budget_tokens: 10,
            query: "q".into(),
            messages: vec![m("s", Role::System, 3), m("a", Role::User, 5), m("b", Role::Assistant, 4), m("c", Role::User, 3)],
        };
        let d = policy().call_compress(&req).unwrap();
        assert_eq!((d.keep, d.tokens), (vec![0, 2, 3], 10));
    }
}
