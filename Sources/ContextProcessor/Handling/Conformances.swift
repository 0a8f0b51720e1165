public import Mio
public import MioTokens

/// `MioClient` is the production ``ContextAPI``.
extension MioClient: ContextAPI {}

/// `TokenProvider` is the production ``TokenSource``.
extension TokenProvider: TokenSource {}
