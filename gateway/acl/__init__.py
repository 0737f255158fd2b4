"""ACL v2: the topic policy language and its compiled engine.

policy = load_policy("policy.json")      # or compile_policy(doc, source="name")
d = policy.authorize_publish(identity, "users/a@b.c/inbox", qos=1, retain=False)
d.allowed, d.reason, d.rule_id, d.pattern, d.granted_qos, d.policy_version
"""

from gateway.acl.decision import REASONS, ExplainStep, PolicyDecision
from gateway.acl.document import PolicyError, Problem, check_document, check_text, policy_schema
from gateway.acl.policy import Policy, PolicyHolder, compile_policy, load_policy

__all__ = [
    "REASONS",
    "ExplainStep",
    "Policy",
    "PolicyDecision",
    "PolicyError",
    "PolicyHolder",
    "Problem",
    "check_document",
    "check_text",
    "compile_policy",
    "load_policy",
    "policy_schema",
]
