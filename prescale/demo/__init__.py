"""``prescale demo``: the whole stack on one machine, prescale next to the HPA on one demand."""
