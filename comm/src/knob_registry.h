// The knob registry's internals: looking a row up and resolving it (environment, aliases,
// default) with the validation its type asks for.
#pragma once

#include <optional>
#include <string_view>

#include "comm/config.h"

namespace epcomm {

// comm's and topology's rows (comm/config.cpp), registered on first use of the registry.
void registerCommKnobs();

std::optional<KnobInfo> findKnob(std::string_view name);

// The row's effective value from the environment (own name, then aliases in order, alias
// values scaled) or its default, validated: throws epcomm::Error (kInvalidArgument)
// "epcomm config: NAME="value" is invalid: expected ..." naming the variable that supplied it.
KnobValue resolveKnob(const KnobInfo& knob, bool readEnvironment);

}  // namespace epcomm
