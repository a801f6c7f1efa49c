//! A minimal route policy: assessments go to the premium tier, long
//! messages to standard, everything else to economy. The long-message
//! threshold comes from the configuration.

use wingate::{Error, Policy, Purpose, RouteDecision, RouteRequest, Tier};

pub struct Config {
    long_chars: usize,
}

fn configure(cfg: &mut Config, config: &[u8]) -> Result<(), Error> {
    cfg.long_chars = 400;
    if config.is_empty() {
        return Ok(());
    }
    let v = wingate::json::parse(config)?; // once per instance, not per decision
    if let Some(n) = v.get("long_chars") {
        cfg.long_chars = n.as_u32().ok_or("long_chars: want a whole number")? as usize;
    }
    Ok(())
}

fn route(cfg: &mut Config, req: &RouteRequest) -> Result<RouteDecision, Error> {
    let (tier, score, reason) = if req.purpose == Purpose::Assessment {
        (Tier::Premium, 0.9, "assessment")
    } else if req.message.len() > cfg.long_chars {
        (Tier::Standard, 0.6, "long message")
    } else {
        (Tier::Economy, 0.1, "small talk")
    };
    Ok(RouteDecision { tier, score, reason: reason.into() })
}

pub fn policy() -> Policy<Config> {
    Policy::new(Config { long_chars: 400 }).on_init(configure).route(route)
}

wingate::export!(policy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_go_to_standard() {
        let mut p = policy();
        p.call_init(br#"{"long_chars": 10}"#).unwrap();
        let d = p.call_route(&RouteRequest { message: "a message longer than ten".into(), ..Default::default() }).unwrap();
        assert_eq!((d.tier, d.reason.as_str()), (Tier::Standard, "long message"));
        assert!(p.call_init(br#"{"long_chars": "x"}"#).is_err());
    }
}
