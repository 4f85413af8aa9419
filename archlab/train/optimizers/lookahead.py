"""Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back",
Algorithm 1) as a wrapper over any base optimizer.

The base ("fast") optimizer takes ``k`` steps from the slow weights φ; then the slow weights
move a fraction ``alpha`` toward where the fast weights ended and the fast weights restart from
them::

    θ_{t,i} = θ_{t,i-1} + A(L, θ_{t,i-1}, d),   i = 1..k,  θ_{t,0} = φ_{t-1}
    φ_t = φ_{t-1} + α (θ_{t,k} - φ_{t-1})

    opt = Lookahead(torch.optim.AdamW(model.parameters(), lr=1e-3), k=5, alpha=0.5)
    ... loss.backward(); opt.step(); opt.zero_grad()

It is a drop-in optimizer: ``param_groups`` are shared with the base (LR schedulers act on the
fast optimizer), ``step``/``zero_grad`` as usual. The model holds the fast weights; right after
every k-th step fast == slow. ``state_dict`` holds the base optimizer's state, the slow weights
and the position in the k-cycle, so a resumed run continues exactly.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Optional

import torch


class Lookahead(torch.optim.Optimizer):
    def __init__(self, base_optimizer: torch.optim.Optimizer, k: int = 5,
                 alpha: float = 0.5) -> None:
        if not isinstance(base_optimizer, torch.optim.Optimizer):
            raise TypeError(f"Lookahead wraps a torch.optim.Optimizer instance, got "
                            f"{type(base_optimizer).__name__}")
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"Lookahead k (fast steps per slow step) must be an int >= 1, got {k}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"Lookahead alpha (slow step size) must be in (0, 1], got {alpha}")
        self.base_optimizer = base_optimizer
        super().__init__(base_optimizer.param_groups, base_optimizer.defaults)
        self.param_groups = base_optimizer.param_groups  # one list: schedulers reach the base
        self.k, self.alpha = k, alpha
        self.fast_steps = 0  # fast steps since the last synchronisation

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None):
        with torch.no_grad():
            for p in self._params():
                if "slow" not in self.state[p]:
                    self.state[p]["slow"] = p.detach().clone()  # φ_0 = θ_0
        loss = self.base_optimizer.step(closure)
        self.fast_steps += 1
        if self.fast_steps == self.k:
            with torch.no_grad():
                for p in self._params():
                    slow = self.state[p]["slow"]
                    slow.add_(p - slow, alpha=self.alpha)
                    p.copy_(slow)
            self.fast_steps = 0
        return loss

    def state_dict(self) -> dict:
        params = self._params()
        slow = {i: self.state[p]["slow"] for i, p in enumerate(params) if "slow" in self.state[p]}
        return {"base": self.base_optimizer.state_dict(), "slow": slow,
                "fast_steps": self.fast_steps}

    def load_state_dict(self, state_dict: dict) -> None:
        missing = {"base", "slow", "fast_steps"} - set(state_dict)
        if missing:
            raise KeyError(f"not a Lookahead state_dict: missing {sorted(missing)} (a plain "
                           f"optimizer state_dict cannot be loaded into Lookahead)")
        self.base_optimizer.load_state_dict(state_dict["base"])
        self.param_groups = self.base_optimizer.param_groups  # load replaced the group dicts
        params = self._params()
        self.state = defaultdict(dict)
        for i, slow in state_dict["slow"].items():
            p = params[int(i)]
            self.state[p]["slow"] = slow.to(device=p.device, dtype=p.dtype).clone()
        self.fast_steps = int(state_dict["fast_steps"])
