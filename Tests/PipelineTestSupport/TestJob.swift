/// A job as the tests write it: its id, its user and its query.
package typealias TestJob = (id: String, userID: String, query: String)
