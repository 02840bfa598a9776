"""What every decision is kept in: the audit recorder (what happened?), the metrics (how
is it going?) and the budgets (within budget?)."""
