"""The regulator console served by the reference receiver (alerts, handling trail, risk list)."""
