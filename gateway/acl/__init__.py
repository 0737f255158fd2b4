"""ACL v2: the topic policy language and its compiled engine."""
