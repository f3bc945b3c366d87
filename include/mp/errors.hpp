// mp/errors.hpp — the exceptions mp raises, named as Python names them.
//
// @code
//   try { q.get(1s); } catch (const mp::Empty&) { ... }
//   catch (const mp::Error& e) { std::cerr << e.what(); }   // any mp failure
// @endcode
//
// Every exception mp throws derives from mp::Error, itself a std::runtime_error.
// A failed system call raises mp::OSError, which carries errno and names the call.
#pragma once

#include <stdexcept>
#include <string>

namespace mp {

/// The root of every exception mp raises.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Misuse of the API (start twice, join before start, a call on a closed object...).
/// The message names the mistake.
class ValueError : public Error {
 public:
  using Error::Error;
};

/// A process-level failure: a child that could not be started, a worker that died.
class ProcessError : public Error {
 public:
  using Error::Error;
};

/// A blocking call ran out of time.
class TimeoutError : public Error {
 public:
  using Error::Error;
};

/// The peer failed the authkey handshake.
class AuthenticationError : public ProcessError {
 public:
  using ProcessError::ProcessError;
};

/// recv_bytes_into was handed a buffer smaller than the message (which stays readable).
class BufferTooShort : public ProcessError {
 public:
  using ProcessError::ProcessError;
};

/// The other end of a connection is closed and nothing is left to read.
class EOFError : public Error {
 public:
  using Error::Error;
};

/// get_nowait / get(timeout) on an empty queue.
class Empty : public Error {
 public:
  using Error::Error;
};

/// put_nowait / put(timeout) on a full queue.
class Full : public Error {
 public:
  using Error::Error;
};

/// A pool worker died while holding the task this future stands for.
class BrokenProcessPool : public Error {
 public:
  using Error::Error;
};

/// A barrier was aborted, reset while waited on, or a wait on it timed out.
class BrokenBarrierError : public Error {
 public:
  using Error::Error;
};

/// The future was cancelled before it ran.
class CancelledError : public Error {
 public:
  using Error::Error;
};

/// Named shared memory that should be new already exists.
class FileExistsError : public Error {
 public:
  using Error::Error;
};

/// Named shared memory that should exist does not.
class FileNotFoundError : public Error {
 public:
  using Error::Error;
};

/// A key that is not there (a manager dict's get, pop or erase), as Python's KeyError.
class KeyError : public Error {
 public:
  using Error::Error;
};

/// An index outside a sequence (a manager list's or array's), as Python's IndexError.
class IndexError : public Error {
 public:
  using Error::Error;
};

/// A name a manager Namespace does not hold, as Python's AttributeError.
class AttributeError : public Error {
 public:
  using Error::Error;
};

/// A value could not cross a process boundary: a type mismatch, a truncated or corrupt
/// message, or a value that is not serializable.
class SerializationError : public Error {
 public:
  using Error::Error;
};

/// A system call failed. what() names the call and the reason; code() is errno.
class OSError : public Error {
 public:
  OSError(const std::string& what, int code) : Error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// An exception raised in another process: what() is "TypeName: message",
/// type_name() the original type, traceback() the remote stack as text.
class RemoteError : public Error {
 public:
  RemoteError(std::string type_name, const std::string& message, std::string traceback)
      : Error(type_name + ": " + message),
        type_name_(std::move(type_name)),
        traceback_(std::move(traceback)) {}
  const std::string& type_name() const noexcept { return type_name_; }
  const std::string& traceback() const noexcept { return traceback_; }

 private:
  std::string type_name_;
  std::string traceback_;
};

}  // namespace mp
